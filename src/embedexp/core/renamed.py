"""Names that changed meaning, in one table: old command-line words stop with the new one named, old saved files load.

"attention" once named four things (the mask mode, a pooling, a command and a kernel); each now has its own name:
`model.attention_mode` (causal or bidirectional), `pooling=final_token_attention`, the command `attention_maps`, and
the packed attention kernel (internal, `embedexp.model.packing`). A command line that uses an old word gets one error
naming the new one (`refuse_renamed`), never a silently ignored key. Saved manifests, run configs and pooling folders
written under the old names are read through `upgrade_manifest` / `upgrade_run_config` and the class aliases.
"""

from __future__ import annotations

from typing import Any

# command-line key -> its name now (`model.attention=bidirectional` -> `model.attention_mode=bidirectional`)
RENAMED_KEYS = {"model.attention": "model.attention_mode"}
# (config group, option) -> the option's name now
RENAMED_OPTIONS = {("pooling", "attention"): "final_token_attention"}
# `python -m embedexp <command>` -> the command's name now
RENAMED_COMMANDS = {"attention": "attention_maps"}
# a saved class path (manifest `pooling.target`, a pooling YAML `_target_`) -> the class's path now
RENAMED_CLASSES = {"embedexp.model.pooling.AttentionPooling": "embedexp.model.pooling.FinalTokenAttentionPooling"}
# a manifest's top-level key -> its name now
RENAMED_MANIFEST_KEYS = {"attention": "attention_mode"}


def renamed_argument(arg: str) -> str | None:
    """The error for a command-line argument that uses an old name (None: the argument is fine)."""
    if "=" not in arg:
        return None
    key, value = arg.split("=", 1)
    plain = key.lstrip("+~").split("@", 1)[0]
    if plain in RENAMED_KEYS:
        return f"`{plain}` was renamed to `{RENAMED_KEYS[plain]}`: use {RENAMED_KEYS[plain]}={value}"
    for option in value.split(","):  # a sweep: pooling=mean,attention
        new = RENAMED_OPTIONS.get((plain, option.strip()))
        if new:
            return f"`{plain}={option.strip()}` was renamed to `{plain}={new}`"
    return None


def refuse_renamed(args: list[str]) -> None:
    """Stop with one clear error when an argument uses a renamed key or option."""
    for arg in args:
        message = renamed_argument(arg)
        if message:
            raise SystemExit(f"error: {message}")


def renamed_class(path: str) -> str:
    """A saved class path as it is named now."""
    return RENAMED_CLASSES.get(path, path)


def upgrade_manifest(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """A manifest saved under old names, read with today's names (a copy; None stays None)."""
    if manifest is None:
        return None
    upgraded = {RENAMED_MANIFEST_KEYS.get(key, key): value for key, value in manifest.items()}
    pooling = upgraded.get("pooling")
    if isinstance(pooling, dict) and "target" in pooling:
        upgraded["pooling"] = {**pooling, "target": renamed_class(str(pooling["target"]))}
    choices = upgraded.get("choices")
    if isinstance(choices, dict):
        upgraded["choices"] = {group: RENAMED_OPTIONS.get((group, str(o)), o) for group, o in choices.items()}
    return upgraded


def upgrade_run_config(cfg: Any) -> Any:
    """A training run's saved config (an OmegaConf node) under today's names, in place; returns it."""
    from omegaconf import open_dict

    model = cfg.get("model")
    with open_dict(cfg):
        if model is not None and "attention" in model:
            if "attention_mode" not in model:
                model.attention_mode = model.attention
            del model["attention"]
        pooling = cfg.get("pooling")
        if pooling is not None and "_target_" in pooling:
            pooling._target_ = renamed_class(str(pooling._target_))
    return cfg
