"""One way in: a training run folder, a LoRA adapter folder, a Lightning checkpoint, an export folder, a
sentence-transformers folder, or the configured base model, opened as it was trained.

Every command that embeds with a saved model (`eval`, `export`, `encode`, `mine`, `attention_maps`, `fidelity`) calls
`open_model(cfg)` with the same keys (`conf/model_source/default.yaml`): `model_path` (any of the kinds above, told
apart by their files), or `run_dir` (`latest`: the newest finished run of any task), `adapter_path`, `ckpt_path`.
A saved model's manifest (`embedexp.model.manifest`) gives its base model, pooling, prompt, max length and attention;
today's config gives only how to run it (packing, threads, precision). Asked values that differ from the saved ones
are refused unless `allow_override=true` (`embedexp.export.overrides`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.core.config import hydra_choices
from embedexp.core.errors import ConfigError
from embedexp.core.hardware import frozen_weights_dtype
from embedexp.core.renamed import upgrade_manifest
from embedexp.export.encoder import EmbedderEncoder, SentenceTransformerEncoder, TextEncoder
from embedexp.export.overrides import OVERRIDE_KEY, Change, apply_changes, find_changes, refuse_or_allow
from embedexp.export.runs import RUN_CONFIG, latest_run, load_checkpoint, load_run_config, read_checkpoint
from embedexp.model.backbone import resolve_source
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.manifest import CHECKPOINT_KEY, read_manifest, weights_hash

log = logging.getLogger(__name__)
SOURCE_KEYS = ("model_path", "run_dir", "adapter_path", "ckpt_path")
RUNTIME_KEYS = ("packed", "frozen_bf16", "compile")  # how to run a model, not what it computes


@dataclass
class OpenedModel:
    """A model opened by `open_model`: an Embedder (run, adapter, checkpoint, base model) or an exported or
    sentence-transformers folder, with what its manifest said and the overrides applied to it."""

    kind: str  # run | adapter | checkpoint | export | sentence_transformers | base
    cfg: DictConfig  # the model, pooling and prompt config the embedder was built from
    embedder: Embedder | None = None
    export: Any = None  # an embedexp.export.load.LoadedExport
    path: str | None = None
    run_dir: Path | None = None
    run_cfg: DictConfig | None = None
    adapter_path: str | None = None
    ckpt_path: str | None = None
    saved: dict[str, Any] | None = None
    changes: list[Change] = field(default_factory=list)

    def label(self, name: str | None = None) -> str:
        """The result row's name: `name` (default: the path or the model's name), with any overridden values."""
        name = name or self.path or (self.embedder.name if self.embedder is not None else "model")
        return f"{name}({', '.join(change.short for change in self.changes)})" if self.changes else name

    def record(self) -> dict[str, Any]:
        """What provenance keeps: the source, whether it had a manifest, and each overridden value (saved, asked)."""
        return {
            "kind": self.kind,
            "path": self.path,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "adapter_path": self.adapter_path,
            "ckpt_path": self.ckpt_path,
            "manifest": self.saved is not None,
            "overridden": [change.as_dict() for change in self.changes],
        }

    def encoder(self) -> TextEncoder:
        """A `TextEncoder` (`encode(texts, batch_size, show_progress)`, L2-normalised) of any kind."""
        if self.export is not None:
            return self.export
        if self.kind == "sentence_transformers":
            return SentenceTransformerEncoder(str(self.path))
        return EmbedderEncoder(self.embedder)


def classify(path: Path, key: str = "model_path") -> str:
    """The kind of a saved model, by its files."""
    if path.is_file() and path.suffix == ".ckpt":
        return "checkpoint"
    if not path.is_dir():
        raise ConfigError(f"{key}={str(path)!r}: no such folder or .ckpt file")
    if (path / RUN_CONFIG).is_file():
        return "run"
    manifest = read_manifest(path)
    if manifest and manifest.get("format"):
        return "export"
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if (path / "modules.json").is_file():
        return "sentence_transformers"
    raise ConfigError(
        f"{key}={str(path)!r}: not a saved model (a run folder has .hydra/config.yaml, an adapter "
        "adapter_config.json, an export embedexp_manifest.json, a sentence-transformers folder modules.json)"
    )


def locate(cfg: DictConfig) -> dict[str, Any]:
    """Which saved model the config names: kind, path, run_dir, adapter_path, ckpt_path."""
    given = {key: str(cfg.get(key)) for key in SOURCE_KEYS if cfg.get(key)}
    where: dict[str, Any] = {"kind": "base", "path": None, "run_dir": None, "adapter_path": None, "ckpt_path": None}
    if "model_path" in given:
        if len(given) > 1:
            raise ConfigError(f"model_path names the model by itself: drop {sorted(set(given) - {'model_path'})}")
        path = Path(resolve_source(given["model_path"], "model_path"))
        kind = classify(path)
        slot = {"run": "run_dir", "adapter": "adapter_path", "checkpoint": "ckpt_path"}.get(kind)
        where.update(kind=kind, path=given["model_path"], **({slot: str(path)} if slot else {}))
        if kind in ("export", "sentence_transformers"):
            where["path"] = str(path)
            return where
    else:
        where.update({key: given.get(key) for key in ("run_dir", "adapter_path", "ckpt_path")})
    if where["adapter_path"] and where["ckpt_path"]:
        raise ConfigError("give adapter_path or ckpt_path, not both")
    run_dir = where["run_dir"] = run_folder(cfg, where["run_dir"])
    if run_dir is not None:
        if not where["adapter_path"] and not where["ckpt_path"]:
            if (run_dir / "adapter" / "adapter_config.json").is_file():
                where["adapter_path"] = str(run_dir / "adapter")
            elif (run_dir / "checkpoints" / "last.ckpt").is_file():
                where["ckpt_path"] = str(run_dir / "checkpoints" / "last.ckpt")
            else:
                raise ConfigError(f"run_dir={str(run_dir)!r}: neither adapter/ nor checkpoints/last.ckpt found")
    if where["kind"] == "base" and (run_dir or where["adapter_path"] or where["ckpt_path"]):
        where["kind"] = "run" if run_dir else "adapter" if where["adapter_path"] else "checkpoint"
        where["path"] = str(run_dir or where["adapter_path"] or where["ckpt_path"])
    return where


def run_folder(cfg: DictConfig, value: Any = None) -> Path | None:
    """`run_dir` (or `value`, or a `model_path` that is a run folder) as a folder; `latest`: the newest finished run
    of any task under `paths.log_dir`."""
    value = cfg.get("run_dir") if value is None else value
    if not value:
        path = cfg.get("model_path")
        is_run = path and Path(resolve_source(str(path), "model_path"), RUN_CONFIG).is_file()
        return Path(resolve_source(str(path), "model_path")) if is_run else None
    if str(value) == "latest":
        found = latest_run(cfg.paths.log_dir)
        log.info("run_dir=latest: %s", found)
        return found
    return Path(str(value))


def config_from_manifest(saved: dict[str, Any], cfg: DictConfig) -> DictConfig:
    """The model, pooling and prompt config that rebuilds a saved model; run options from `cfg`, paths of here."""
    model_cfg = cfg.get("model") or {}
    runtime = {key: model_cfg.get(key) for key in RUNTIME_KEYS if key in model_cfg}
    backbone = dict(saved["backbone"])
    if "cache_dir" in backbone:
        backbone["cache_dir"] = "${paths.cache_dir}"  # this machine's cache, not the saving machine's
    prompt = dict(saved["prompt"])
    built = OmegaConf.create(
        {
            "model": {
                **runtime,
                "backbone": backbone,
                "lora": saved.get("lora"),
                "attention_mode": saved.get("attention_mode", "causal"),
                "init_adapter": saved.get("init_adapter"),
                "max_length": saved["max_length"],
                "padding_side": saved.get("padding_side", "right"),
                "gradient_checkpointing": False,
            },
            "pooling": {"_target_": saved["pooling"]["target"], **saved["pooling"]["config"]},
            "prompt": {"_target_": prompt.pop("target", "embedexp.model.prompts.PromptTemplate"), **prompt},
        }
    )
    with open_dict(built):
        built.paths = OmegaConf.create(OmegaConf.to_container(cfg.paths, resolve=False))
    return built


def frozen_dtype(saved: dict[str, Any], precisions: dict[str, str] | None) -> torch.dtype | None:
    """Frozen weights as the saved model held them (bf16 only where this run also computes in bf16), so a run's
    scores are reproduced: a float32-trained adapter is not scored on bf16-rounded base weights."""
    if saved.get("precision", {}).get("frozen_weights") != "bfloat16":
        return None
    return frozen_weights_dtype(precisions or {})


def open_model(
    cfg: DictConfig,
    *,
    require_weights: bool = False,
    eager_attention: bool = False,
    precisions: dict[str, str] | None = None,
) -> OpenedModel:
    """Open whatever model the config names (see the module docstring); `require_weights`: refuse the base model."""
    where = locate(cfg)
    if require_weights and where["kind"] == "base":
        raise ConfigError("no trained model named: set model_path, run_dir, adapter_path or ckpt_path")
    if where["kind"] in ("export", "sentence_transformers"):
        return open_folder(cfg, where)
    run_cfg = load_run_config(where["run_dir"], cfg.paths) if where["run_dir"] else None
    if where["kind"] == "base":
        embedder = build_embedder(
            cfg, trainable=False, new_lora=False, eager_attention=eager_attention, precisions=precisions
        )
        return OpenedModel("base", cfg, embedder.eval().requires_grad_(False))
    adapter, ckpt = where["adapter_path"], where["ckpt_path"]
    checkpoint = read_checkpoint(ckpt) if ckpt else None
    saved = read_manifest(adapter) if adapter else upgrade_manifest((checkpoint or {}).get(CHECKPOINT_KEY))
    source = f"adapter_path={adapter!r}" if adapter else f"ckpt_path={ckpt!r}"
    changes: list[Change] = []
    if saved is not None:
        changes = find_changes(cfg, saved, hydra_choices())
        refuse_or_allow(changes, source, bool(cfg.get(OVERRIDE_KEY)))
        model_cfg = config_from_manifest(saved, cfg)
        apply_changes(model_cfg, cfg, changes)
        build = dict(precisions=None, frozen_dtype=frozen_dtype(saved, precisions))
    else:
        model_cfg = OmegaConf.create(OmegaConf.to_container(run_cfg or cfg, resolve=False))
        with open_dict(model_cfg):
            model_cfg.model.gradient_checkpointing = False
        log.warning(
            "%s has no manifest (saved before embedexp recorded one): model, pooling and prompt come from %s",
            source,
            "the run's config" if run_cfg is not None else "this command's config",
        )
        build = dict(precisions=precisions)
    embedder = build_embedder(
        model_cfg, adapter_path=adapter, trainable=False, new_lora=bool(ckpt), eager_attention=eager_attention, **build
    )
    if ckpt:
        load_checkpoint(embedder, ckpt, checkpoint)
    embedder.eval().requires_grad_(False)
    if saved is not None:
        changes += check_base_weights(embedder, saved, changes, source, bool(cfg.get(OVERRIDE_KEY)))
        embedder.manifest["choices"] = {**saved.get("choices", {}), **{c.aspect: c.choice for c in changes if c.choice}}
    return OpenedModel(
        where["kind"],
        model_cfg,
        embedder,
        path=where["path"],
        run_dir=where["run_dir"],
        run_cfg=run_cfg,
        adapter_path=adapter,
        ckpt_path=ckpt,
        saved=saved,
        changes=changes,
    )


def check_base_weights(
    embedder: Embedder, saved: dict[str, Any], changes: list[Change], source: str, allowed: bool
) -> list[Change]:
    """Compare the base model's weights with the saved hash (unless the base model was overridden on purpose)."""
    expected = (saved.get("base_model") or {}).get("weights_hash")
    actual = weights_hash(embedder.model)
    embedder.manifest["base_model"]["weights_hash"] = actual
    if not expected or expected == actual or any(change.aspect == "base_model" for change in changes):
        return []
    change = Change("base_model", "weights_hash", expected, actual)
    refuse_or_allow([change], source, allowed)
    return [change]


def open_folder(cfg: DictConfig, where: dict[str, Any]) -> OpenedModel:
    """An export folder (its manifest checked like an adapter's; nothing in it can be overridden: per-task prompts go
    through `prompts=`) or a plain sentence-transformers folder (nothing saved to check)."""
    if where["kind"] == "sentence_transformers":
        return OpenedModel("sentence_transformers", cfg, path=where["path"])
    from embedexp.export.load import load_export

    loaded = load_export(where["path"])
    changes = find_changes(cfg, loaded.manifest, hydra_choices())
    if changes:
        lines = "; ".join(change.describe() for change in changes)
        raise ConfigError(
            f"model_path={where['path']!r} is an export, fixed as it was trained ({lines}): drop the override(s), "
            "give per-task prompt templates with prompts=, or open its run or adapter with allow_override=true"
        )
    return OpenedModel("export", cfg, export=loaded, path=where["path"], saved=loaded.manifest)


def load_encoder(cfg: DictConfig) -> TextEncoder:
    """The model the config names as a `TextEncoder` (encode, mine)."""
    return open_model(cfg).encoder()
