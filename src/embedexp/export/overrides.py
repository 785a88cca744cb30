"""What the command line asks of a saved model, against what its manifest says it was trained with.

An override that changes how a saved model embeds (its pooling or one of its options, the prompt, the base model, the
max length, the attention mode) is refused with both values named, unless `allow_override=true`; then the model embeds
with the asked values, and `Change.short` labels the result row with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from embedexp.core.errors import ConfigError
from embedexp.model.manifest import backbone_identity, container, pooling_record, prompt_record
from embedexp.model.pooling import pooled_layer

OVERRIDE_KEY = "allow_override"
ASPECTS = ("base_model", "pooling", "prompt", "max_length", "attention_mode")


@dataclass
class Change:
    """One aspect (`pooling`, or one option: `pooling.layer`) whose asked value differs from the saved one."""

    aspect: str
    key: str | None
    saved: Any
    asked: Any
    choice: str | None = None  # the config option typed (`pooling=last`), for the row label

    @property
    def name(self) -> str:
        """`pooling` or `pooling.layer`."""
        return f"{self.aspect}.{self.key}" if self.key else self.aspect

    @property
    def short(self) -> str:
        """`pooling=last`: the row label's part."""
        return f"{self.name}={self.choice or _compact(self.asked)}"

    def describe(self) -> str:
        """`pooling: saved ..., asked ...`."""
        return f"{self.name}: saved {_compact(self.saved)}, asked {_compact(self.asked)}"

    def as_dict(self) -> dict[str, Any]:
        """The provenance record of this change."""
        return {"aspect": self.name, "saved": self.saved, "asked": self.asked}


def _compact(value: Any) -> str:
    """A one-line rendering of a saved or asked value."""
    if isinstance(value, dict):
        target = value.get("class") or value.get("_target_")
        rest = {k: v for k, v in value.items() if k not in ("class", "_target_")}
        head = str(target).rsplit(".", 1)[-1] if target else ""
        return head + str(rest) if head else str(rest)
    return repr(value) if isinstance(value, str) else str(value)


def task_overrides(cfg: DictConfig) -> list[str]:
    """The command line's overrides: this Hydra job's, or those of a config composed with its Hydra node."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    node = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    return [str(item) for item in node] if node is not None else []


def asked_keys(cfg: DictConfig) -> set[str]:
    """The keys the command line set (`pooling`, `eval.precision`, ...), without `+`/`~` and package suffixes."""
    return {override.split("=", 1)[0].lstrip("+~").split("@", 1)[0] for override in task_overrides(cfg)}


def aspect_of(key: str) -> tuple[str, str | None] | None:
    """The embedding aspect an override key changes (`pooling.layer` -> (pooling, layer)); None for runtime keys."""
    for group in ("pooling", "prompt"):
        if key == group:
            return group, None
        if key.startswith(group + "."):
            option = key.split(".", 1)[1]
            return None if (group, option) == ("prompt", "name") else (group, option)
    if key == "model" or key.startswith("model.backbone") or key == "model.init_adapter":
        return "base_model", None
    return {"model.max_length": ("max_length", None), "model.attention_mode": ("attention_mode", None)}.get(key)


def asked_aspects(cfg: DictConfig) -> list[tuple[str, str | None]]:
    """The aspects the command line set explicitly, in order, without repeats (a group covers its options)."""
    found: list[tuple[str, str | None]] = []
    for override in task_overrides(cfg):
        key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        aspect = aspect_of(key)
        if aspect and aspect not in found and (aspect[0], None) not in found:
            found.append(aspect)
    return found


def saved_value(manifest: dict[str, Any], aspect: str) -> Any:
    """A manifest's value of one aspect, in the form `asked_value` gives."""
    if aspect == "pooling":
        return {"class": manifest["pooling"]["target"], **manifest["pooling"]["config"]}
    if aspect == "prompt":
        return {k: v for k, v in manifest["prompt"].items() if k not in ("target", "name")}
    if aspect == "base_model":
        return backbone_identity(manifest["backbone"], manifest.get("init_adapter"))
    return manifest.get(aspect, "causal" if aspect == "attention_mode" else None)


def asked_value(cfg: DictConfig, manifest: dict[str, Any], aspect: str) -> Any:
    """The config's value of one aspect (pooling layers made absolute for the saved model's depth)."""
    if aspect == "pooling":
        base = manifest.get("base_model", {})
        size = {"hidden_size": base.get("hidden_size")} if cfg.pooling.get("hidden_size", 0) is None else {}
        pooling = instantiate(cfg.pooling, **size)
        if base.get("n_layers"):
            pooling.layer = pooled_layer(pooling, int(base["n_layers"]))
        record = pooling_record(pooling)
        return {"class": record["target"], **record["config"]}
    if aspect == "prompt":
        record = prompt_record(instantiate(cfg.prompt))
        return {k: v for k, v in record.items() if k not in ("target", "name")}
    if aspect == "base_model":
        return backbone_identity(container(cfg.model.backbone), cfg.model.get("init_adapter"))
    if aspect == "max_length":
        return int(cfg.model.max_length)
    return cfg.model.get("attention_mode") or "causal"


def find_changes(cfg: DictConfig, manifest: dict[str, Any], choices: dict[str, str]) -> list[Change]:
    """The asked aspects whose value differs from the saved one (an option: only that option is compared)."""
    changes = []
    for aspect, key in asked_aspects(cfg):
        saved, asked = saved_value(manifest, aspect), asked_value(cfg, manifest, aspect)
        if key is not None:
            saved, asked = (saved or {}).get(key), (asked or {}).get(key)
        if saved != asked:
            group = {"base_model": "model"}.get(aspect, aspect)
            choice = (choices.get(group) or default_choice(cfg, aspect)) if key is None else None
            changes.append(Change(aspect, key, saved, asked, choice))
    return changes


def default_choice(cfg: DictConfig, aspect: str) -> str | None:
    """A short name of an asked group value when the option typed is unknown (outside a Hydra run)."""
    if aspect == "pooling":
        return str(cfg.pooling._target_).rsplit(".", 1)[-1]
    if aspect == "prompt":
        return cfg.prompt.get("name")
    if aspect == "base_model":
        backbone = cfg.model.backbone
        return str(backbone.get("name_or_path") or backbone.get("_target_", "")).rsplit(".", 1)[-1]
    return None


def refuse_or_allow(changes: list[Change], source: str, allowed: bool) -> None:
    """Raise a ConfigError naming every change unless `allow_override` is set."""
    if not changes or allowed:
        return
    lines = "; ".join(change.describe() for change in changes)
    raise ConfigError(
        f"{source} was trained otherwise than asked ({lines}). Its manifest sets these; drop the override(s) to "
        f"embed as it was trained, or set {OVERRIDE_KEY}=true to embed with the asked values (the result is labelled "
        "with them)"
    )


def apply_changes(model_cfg: DictConfig, cfg: DictConfig, changes: list[Change]) -> None:
    """Put the asked values of `changes` into the manifest-built `model_cfg`, in place."""
    for change in changes:
        if change.aspect in ("pooling", "prompt"):
            source = cfg[change.aspect]
            if change.key is None:
                model_cfg[change.aspect] = OmegaConf.create(OmegaConf.to_container(source, resolve=True))
            else:
                model_cfg[change.aspect][change.key] = source[change.key]
        elif change.aspect == "base_model":
            model_cfg.model.backbone = OmegaConf.create(OmegaConf.to_container(cfg.model.backbone, resolve=True))
            model_cfg.model.init_adapter = cfg.model.get("init_adapter")
        else:
            model_cfg.model[change.aspect] = change.asked
