"""`embedexp --help` and `embedexp <command> --help`: each command's config groups and their options, one line each.

Read from the config folder itself: a command's groups are the entries of `conf/<command>.yaml`'s defaults list (the
internal `hydra` and `paths` groups left out), a group's options are the YAML files in `conf/<group>/`, and an
option's description is the first sentence of its file's leading comment (usually its first comment line; a
`# @package` line skipped), clipped to one line. The folders of `hydra.searchpath=[file://...]` (and `--config-dir`)
add the user's own options to each group, marked with their folder.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from embedexp.core.config import CONFIG_DIR

COMMANDS = {
    "train": "train and evaluate an embedder (conf/train.yaml); -m for sweeps",
    "eval": "score a model, a run or an exported folder on the clustering tasks (conf/eval.yaml)",
    "encode": "embed a text file or table column to .npy / .parquet (conf/encode.yaml)",
    "export": "export a run as adapter, merged model and sentence-transformers folder (conf/export.yaml)",
    "soup": "average the LoRA adapters of chosen runs and score the average (conf/soup.yaml)",
    "report": "tables with 95 % intervals over seeds for multirun folders (conf/report.yaml)",
    "search_report": "every run of the recipe search, one row each, as a result file (conf/search_report.yaml)",
    "fidelity": "the callback's small-task scores against larger evaluations (conf/fidelity.yaml)",
    "attention_maps": "attention maps: where the final token looks (conf/attention_maps.yaml)",
    "synth": "synthetic positive pairs (conf/synth.yaml)",
    "mine": "add mined hard negatives to a pair file (conf/mine.yaml)",
    "fetch_shared": "build the shared clustering data files from their public sources (needs internet)",
    "contamination": "a run's training pairs against labelled files: exact and near-duplicate overlap",
}
INTERNAL_GROUPS = {"hydra", "paths"}
ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "vs.", "etc.", "cf.")
WIDTH = 110


def defaults_list(command: str, config_dir: Path = CONFIG_DIR) -> dict[str, str | None]:
    """The groups of `conf/<command>.yaml`'s defaults list and their default options (None: no default)."""
    path = config_dir / f"{command}.yaml"
    if not path.is_file():
        return {}
    entries = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("defaults") or []
    groups: dict[str, str | None] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key, option in entry.items():
            group = re.sub(r"^(optional|override)\s+", "", str(key)).lstrip("/")
            if group not in INTERNAL_GROUPS:
                groups[group] = None if option is None else str(option)
    return groups


def description(path: Path) -> str:
    """The first sentence of a YAML file's leading comment (a `# @package` line and indented examples skipped)."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        body = text.lstrip("#").strip()
        if body.startswith("@package"):
            continue
        if not text.startswith("#") or not body or line.startswith("#  "):  # code, a blank, an example command
            if lines or (text and not text.startswith("#")):
                break
            continue
        lines.append(body)
    return first_sentence(" ".join(lines))


def first_sentence(text: str) -> str:
    """Text up to its first `.` or `;` followed by a space outside brackets, not counting abbreviations (`et al.`)."""
    depth = 0
    for position, char in enumerate(text):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
        ends = char in ".;" and depth <= 0 and text[position + 1 : position + 2].isspace()
        if ends and not text[: position + 1].endswith(ABBREVIATIONS):
            return text[: position + 1].rstrip(";")
    return text.rstrip(":")


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    """Option name -> description, for every YAML file of `conf/<group>/`."""
    folder = config_dir / group
    return {path.stem: description(path) for path in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def search_dirs(args: Sequence[str]) -> list[Path]:
    """The config folders a command line adds: `hydra.searchpath=[file://<dir>,pkg://<package>]`, `--config-dir`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    entries: list[str] = []
    for index, arg in enumerate(args):
        if arg.lstrip("+").startswith("hydra.searchpath="):
            value = OverridesParser.create().parse_override(arg).value()
            entries += [str(v) for v in (value if isinstance(value, list) else [value])]
        elif arg in ("-cd", "--config-dir") and index + 1 < len(args):
            entries.append(args[index + 1])
        elif arg.startswith("--config-dir="):
            entries.append(arg.split("=", 1)[1])
    return [folder for folder in map(_search_dir, entries) if folder is not None and folder.is_dir()]


def _search_dir(entry: str) -> Path | None:
    """The folder of one search-path entry (`file://`, `pkg://` or a plain path)."""
    if entry.startswith("pkg://"):
        spec = importlib.util.find_spec(entry[len("pkg://") :].replace("/", "."))
        locations = list(spec.submodule_search_locations or []) if spec else []
        return Path(locations[0]) if locations else None
    return Path(entry.removeprefix("file://")).expanduser()


def all_group_options(group: str, extra_dirs: Sequence[Path] = ()) -> dict[str, str]:
    """`group_options` of conf/ and then of each search-path folder (their options marked with the folder)."""
    options = group_options(group)
    for folder in extra_dirs:
        options |= {name: f"{text}  [{folder}]" for name, text in group_options(group, folder).items()}
    return options


def clip(text: str, width: int = WIDTH) -> str:
    """One line of at most `width` characters."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def top_level_keys(command: str, config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    """Key -> its inline comment (else `= <value>`), for the top-level keys of `conf/<command>.yaml`."""
    path = config_dir / f"{command}.yaml"
    keys = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        found = re.match(r"^([A-Za-z_]\w*):(.*)$", line)
        if found and found.group(1) != "defaults":
            value, _, comment = found.group(2).partition(" #")
            shown = f"= {value.strip()}" if value.strip() else f"(nested: {found.group(1)}.<key>)"
            keys[found.group(1)] = comment.strip() or shown
    return keys


def command_help(command: str, summary: str = "", extra_dirs: Sequence[Path] = ()) -> str:
    """The help of one command: usage, each config group with its options (the default marked `*`; those of the
    search-path folders `extra_dirs` too), its keys."""
    lines = [f"usage: embedexp {command} [group=option ...] [key=value ...]", ""]
    if summary:
        lines += [summary, ""]
    groups = defaults_list(command)
    keys = top_level_keys(command)
    width = max((len(key) for key in keys), default=0) + 2
    key_lines = [clip(f"  {key:{width}s}{text}") for key, text in keys.items()]
    if not groups:
        return "\n".join(lines + [f"keys of conf/{command}.yaml (no config groups to choose):", *key_lines])
    lines.append(f"config groups (conf/<group>/; * = the default of conf/{command}.yaml):")
    for group, default in groups.items():
        lines.append(f"  {group}=" + ("" if default else "  (none by default)"))
        options = all_group_options(group, extra_dirs)
        width = max((len(name) for name in options), default=0) + 2
        for name, text in options.items():
            mark = "*" if name == default else " "
            lines.append(clip(f"    {mark} {name:{width}s}{text}"))
    lines += ["", f"keys of conf/{command}.yaml (and of every group above, as <group>.<key>):", *key_lines]
    lines += [
        "",
        f"Any key of the composed config can be set too (key=value). `embedexp {command} --cfg job` prints that "
        "config;",
        f"`embedexp {command} --hydra-help` shows Hydra's own flags. The documentation: docs/configuration.md.",
    ]
    return "\n".join(lines)


def overview(commands: dict[str, str] = COMMANDS, config_dir: Path = CONFIG_DIR) -> str:
    """`embedexp --help`: every command with its summary and the names of its config groups."""
    lines = ["usage: embedexp <command> [group=option ...] [key=value ...]   (or python -m embedexp <command>)", ""]
    lines.append("commands (config groups in brackets):")
    for name, summary in commands.items():
        lines.append(clip(f"  {name:13s} {summary}"))
        groups = list(defaults_list(name, config_dir))
        if groups:
            lines.append(clip(f"  {'':13s} [{', '.join(groups)}]"))
    lines += ["", "`embedexp <command> --help` lists each group's options, one line each."]
    return "\n".join(lines)
