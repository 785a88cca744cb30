"""No dead config keys: every key of every option of every group, in every command's config, is read by something.

A key under a `_target_` node must be a parameter of that target (Hydra passes it). Any other key must be read by
the command's code (its name appears as an attribute or a string in the embedexp modules the command's entry point
imports, or that a config value names) or be used by an interpolation of the composed config. Config groups whose
options are plain settings (`model`) must give every option the same keys, so no option lacks a key the code reads.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from functools import cache
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from embedexp.core.config import CONFIG_DIR, PACKAGE_DIR

COMMANDS = ["train", "eval", "export", "encode", "attention_maps", "mine", "synth", "report", "fidelity"]
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# config nodes the code passes whole to a function (`**node`): their keys are that function's parameters
PASSED_WHOLE = {"model.lora": "embedexp.model.lora.apply_lora"}
MODULE_PATH = re.compile(r"^(embedexp(?:\.\w+)+)$")


def module_file(name: str) -> Path | None:
    """The source file of an embedexp module (or of the module holding the attribute a dotted name ends with)."""
    parts = name.split(".")
    while len(parts) > 1:
        base = PACKAGE_DIR.parent.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        parts.pop()
    return None


@cache
def imported_modules(path: Path) -> frozenset[str]:
    """The embedexp modules a source file imports anywhere (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embedexp"):
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("embedexp")}
    return frozenset(names)


def reachable_files(roots: set[str]) -> set[Path]:
    """Every embedexp source file reachable by imports from the given modules."""
    files: set[Path] = set()
    todo = [path for path in map(module_file, roots) if path is not None]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        todo += [found for found in map(module_file, imported_modules(path)) if found and found not in files]
        init = path.parent / "__init__.py"
        if init.is_file() and init not in files:
            todo.append(init)
    return files


@cache
def names_in(path: Path) -> frozenset[str]:
    """Attribute names and string constants of a source file: the ways code reads a config key."""
    tree = ast.parse(path.read_text())
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return frozenset(attributes | strings)


def has_target(node) -> bool:
    """Whether a config node is an object Hydra instantiates (`_target_` set)."""
    return isinstance(node, DictConfig) and not node._is_none() and node.get("_target_") is not None


def keys_to_check(node, path: str = "", under_target: bool = False):
    """(key path, owning `_target_` node or None) of every key a config sets for the code or a target to read.

    Entries of a collection (`tasks.<name>`, `callbacks.<name>`: a target node, or null to leave one out) are named,
    not read; their own keys are checked against their target. Dicts nested inside a target's argument are the
    target's business (a key it does not take fails when it is called).
    """
    if not isinstance(node, DictConfig) or node._is_none():
        return
    target = node if has_target(node) else None
    children = {key: node._get_node(key) for key in node.keys()}
    collection = any(has_target(child) for child in children.values())
    for key, child in children.items():
        child_path = f"{path}.{key}" if path else str(key)
        is_entry = has_target(child) or (collection and child._is_none())
        if not is_entry and not (under_target and target is None):
            yield child_path, target
        if isinstance(child, DictConfig) and not child._is_interpolation():
            yield from keys_to_check(child, child_path, under_target or target is not None)
        elif isinstance(child, ListConfig) and not child._is_none() and not child._is_interpolation():
            for index, item in enumerate(child):
                if has_target(item):
                    yield from keys_to_check(item, f"{child_path}[{index}]", True)


def string_values(cfg) -> list[str]:
    """Every string value of a config, unresolved (interpolations as written)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    found, todo = [], [container]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo += list(item.values())
        elif isinstance(item, list):
            todo += item
        elif isinstance(item, str):
            found.append(item)
    return found


def interpolated_paths(cfg) -> set[str]:
    """Dotted key paths that interpolations of the config refer to (`${paths.output_dir}`, `${oc.select:loss.dims}`)."""
    paths = set()
    for value in string_values(cfg):
        for body in re.findall(r"\$\{([^}]*)\}", value):
            paths |= set(re.findall(r"[A-Za-z_][\w.]*", body.split(":", 1)[-1]))
    return paths


@cache
def parameters(target: str) -> set[str] | None:
    """Keyword parameters of a `_target_` (None: it takes **kwargs, so any key goes)."""
    obj = get_object(target)
    signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return set(signature.parameters) - {"self"}


def taken_by_container(cfg, path: str) -> bool:
    """Whether a target above the key's own one reads it from its entries (its class lists it in `ENTRY_KEYS`, e.g.
    a mixture's per-source `weight`)."""
    parts, key = path.split("."), path.rsplit(".", 1)[-1]
    for depth in range(len(parts) - 2, 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:depth]))
        if has_target(node) and key in getattr(get_object(node._target_), "ENTRY_KEYS", ()):
            return True
    return False


def compositions(config: str, seen: set[str]) -> list[list[str]]:
    """The command's default composition, plus one per option of each config group not `seen` in an earlier command
    (a group's keys are checked once, in the first command that composes it)."""
    loader = GlobalHydra.instance().config_loader()
    cfg = compose(config_name=config, return_hydra_config=True)
    groups = [group for group in cfg.hydra.runtime.choices if not str(group).startswith("hydra") and group not in seen]
    seen |= set(groups)
    return [[]] + [[f"{group}={option}"] for group in groups for option in loader.get_group_options(group)]


def check_composition(config: str, overrides: list[str]) -> tuple[list[str], dict[str, tuple[bool, bool]]]:
    """(keys a target does not take, {plain key: (read here, from a group shared by commands)}) of one composition."""
    cfg = compose(config_name=config, overrides=overrides, return_hydra_config=True)
    interpolated = interpolated_paths(cfg)
    groups = {str(group).rsplit("/", 1)[-1] for group in cfg.hydra.runtime.choices}
    roots = {f"embedexp.cli.{config}"} | {v for v in string_values(cfg) if MODULE_PATH.match(v)}
    read = frozenset().union(*(names_in(path) for path in reachable_files(roots)))
    not_taken, plain = [], {}
    for path, target in keys_to_check(cfg):
        key = path.rsplit(".", 1)[-1]
        if path.split(".")[0] == "hydra" or key in HYDRA_KEYS:
            continue  # Hydra's own settings (their interpolations of our keys were collected above)
        owner = next((node for node in PASSED_WHOLE if path.startswith(node + ".")), None)
        if owner is not None or target is not None:
            accepted = parameters(PASSED_WHOLE[owner] if owner else target._target_)
            if accepted is not None and key not in accepted and not taken_by_container(cfg, path):
                not_taken.append(path)
            continue
        used = key in read or any(p == path or p.startswith(path + ".") for p in interpolated)
        plain[path] = (used, path.split(".")[0] in groups)
    return not_taken, plain


def dead_keys(configs: list[str]) -> dict[str, str]:
    """{key: where} for every key nothing reads: not a parameter of its target, or a plain key that no composition of
    its command reads (a key of a shared group such as `paths`: that no composition of any command reads)."""
    dead, own_read, group_read, seen = {}, {}, {}, set()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for config in configs:
            for overrides in compositions(config, seen):
                not_taken, plain = check_composition(config, overrides)
                where = f"{config} {' '.join(overrides)}".strip()
                dead.update(
                    {path: f"{where}: not a parameter of its _target_" for path in not_taken if path not in dead}
                )
                for path, (used, shared) in plain.items():
                    table, key = (group_read, path) if shared else (own_read, (config, path))
                    was_used, first = table.get(key, (False, where))
                    table[key] = (was_used or used, first)
    dead.update({path: f"{where}: read by no command" for path, (used, where) in group_read.items() if not used})
    dead.update({path: f"{where}: read by no code" for (_, path), (used, where) in own_read.items() if not used})
    return dead


def test_every_key_of_every_group_option_is_read():
    dead = dead_keys(COMMANDS)
    assert not dead, "keys nothing reads (key: the first config composing it):\n" + "\n".join(
        f"  {path}: {where}" for path, where in sorted(dead.items())
    )


def plain_keys(node, prefix: str = "") -> set[str]:
    """Key paths of a group option that are not arguments of a `_target_` inside it."""
    keys = set()
    for key in node:
        value = node._get_node(key)
        keys.add(prefix + str(key))
        if isinstance(value, DictConfig) and "_target_" not in value and not value._is_none():
            keys |= plain_keys(value, f"{prefix}{key}.")
    return keys


def test_every_model_option_has_every_key_the_code_reads():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options("model")
        nodes = {name: compose(config_name="train", overrides=[f"model={name}"]).model for name in options}
    keys = {name: plain_keys(node) for name, node in nodes.items()}
    union = set().union(*keys.values())
    assert {name: sorted(union - found) for name, found in keys.items() if union - found} == {}


def test_a_dead_key_fails_the_check(tmp_path, monkeypatch):
    """The check itself: a key added to a command's config and a key added to a target's node are both flagged."""
    import shutil

    config_dir = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, config_dir)
    with (config_dir / "attention_maps.yaml").open("a") as handle:
        handle.write("unused_setting: 3\n")
    with (config_dir / "pooling" / "mean.yaml").open("a") as handle:
        handle.write("temperature: 0.5\n")
    monkeypatch.setattr(sys.modules[__name__], "CONFIG_DIR", config_dir)
    monkeypatch.setattr(sys.modules[__name__], "compositions", lambda config, seen: [[]])
    dead = dead_keys(["attention_maps", "train"])
    assert "read by no code" in dead["unused_setting"] and "not a parameter" in dead["pooling.temperature"]
