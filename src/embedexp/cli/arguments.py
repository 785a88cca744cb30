"""Command-line helpers shared by the report commands: folder arguments become a `sweep_dir=[...]` override."""

from __future__ import annotations

from pathlib import Path

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
    quoted = ",".join('"' + str(Path(f).resolve()).replace("\\", "\\\\").replace('"', '\\"') + '"' for f in folders)
    return [f"sweep_dir=[{quoted}]", *rest]
