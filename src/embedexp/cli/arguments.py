"""Command-line helpers shared by the report commands: folder arguments become a `sweep_dir=[...]` override."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import ListConfig

PATH_FLAGS = {"-cp", "--config-path", "-cd", "--config-dir", "-cn", "--config-name"}


def positional_to_override(argv: list[str]) -> list[str]:
    """Turn folder arguments (`report <dir> [<dir>]`) into the override `sweep_dir=[...]`; keep everything else."""
    folders, rest = [], []
    for index, arg in enumerate(argv):
        after_flag = index > 0 and argv[index - 1] in PATH_FLAGS
        if "=" not in arg and not arg.startswith("-") and not after_flag and Path(arg).is_dir():
            folders.append(arg)
        else:
            rest.append(arg)
    if not folders:
        return rest
    # absolute but not resolved: a folder reached through a symlink keeps the name it was typed with
    quoted = ",".join('"' + os.path.abspath(f).replace("\\", "\\\\").replace('"', '\\"') + '"' for f in folders)
    return [f"sweep_dir=[{quoted}]", *rest]


def sweep_dirs(value) -> list:
    """`sweep_dir` as a list: one folder or several."""
    return list(value) if isinstance(value, ListConfig | list) else [value]


def print_written(paths: dict[str, Path], what: str) -> None:
    """Print the Markdown file, then where every file went."""
    print(paths["md"].read_text())
    print(f"{what} written to " + ", ".join(str(p) for p in paths.values()))


def typed_command(command: str) -> str:
    """`python -m embedexp <command> <overrides>` of this Hydra job (paths below the current folder made relative),
    the command a result file names."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return " ".join(["python -m embedexp", command, *overrides]).replace(os.getcwd() + os.sep, "")
