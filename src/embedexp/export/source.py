"""What to export: a run folder, an adapter folder or a Lightning checkpoint, rebuilt as the training Embedder."""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.core.config import hydra_choices
from embedexp.core.errors import ConfigError
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder

log = logging.getLogger(__name__)
RUN_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_CONFIG = Path(".hydra") / "hydra.yaml"


@dataclass
class ExportSource:
    """The training Embedder with its trained weights, the config it was built from, and the run's records."""

    cfg: DictConfig
    embedder: Embedder
    run_dir: Path | None = None
    adapter_path: str | None = None
    ckpt_path: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """`embedexp/<backbone>-<pooling>-<prompt>` (the config options chosen), or the configured `name`."""
        pooling = self.choices.get("pooling") or class_slug(self.embedder.pooling)
        return self.cfg.get("name") or f"embedexp/{backbone_slug(self.cfg)}-{pooling}-{self.embedder.prompt.name}"


def class_slug(pooling: torch.nn.Module) -> str:
    """`LastTokenPooling` -> `last_token`: a name for a pooling whose config option is unknown."""
    words = re.findall(r"[A-Z][a-z0-9]*", type(pooling).__name__.removesuffix("Pooling")) or ["pooling"]
    return "_".join(word.lower() for word in words)


def run_choices(run_dir: Path | None) -> dict[str, str]:
    """The config option chosen per group: a run folder's (`.hydra/hydra.yaml`), else this process's."""
    if run_dir is None:
        return hydra_choices()
    path = run_dir / HYDRA_CONFIG
    if not path.is_file():
        return {}
    choices = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices", default=None) or {}
    return {str(group): str(option) for group, option in choices.items() if option is not None}


def backbone_slug(cfg: DictConfig) -> str:
    """A short model name: the GGUF file stem, the last part of a hub id or folder, or `tiny-llama`."""
    backbone = cfg.model.backbone
    if backbone.get("gguf_file"):
        return Path(backbone.gguf_file).name.split(".")[0]
    if backbone.get("name_or_path"):
        return str(backbone.name_or_path).rstrip("/").rsplit("/", 1)[-1]
    return "tiny-llama" if "tiny" in str(backbone.get("_target_", "")) else "model"


def load_run_config(run_dir: Path, paths: DictConfig) -> DictConfig:
    """A training run's saved config, with `paths` replaced by this machine's (the run's may not resolve here)."""
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise ConfigError(f"run_dir={str(run_dir)!r}: no {RUN_CONFIG} (is it a training run folder?)")
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        cfg.paths = OmegaConf.create(OmegaConf.to_container(paths, resolve=False))
    return cfg


def run_records(run_dir: Path | None) -> dict[str, Any]:
    """What a run folder recorded for the model card: config text, metrics, clustering table, data manifest."""
    if run_dir is None:
        return {}
    records: dict[str, Any] = {}
    files = {
        "config_yaml": RUN_CONFIG,
        "overrides_yaml": Path(".hydra") / "overrides.yaml",
        "clustering_md": Path("clustering_results.md"),
    }
    for key, relative in files.items():
        if (run_dir / relative).is_file():
            records[key] = (run_dir / relative).read_text(encoding="utf-8")
    if (run_dir / "metrics.json").is_file():
        records["metrics"] = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    manifests = sorted(run_dir.glob("data_manifest*")) + sorted(run_dir.glob("data/manifest*"))
    if manifests:
        records["data_manifest"] = manifests[0].read_text(encoding="utf-8")
    return records


def load_checkpoint(embedder: Embedder, ckpt_path: str) -> None:
    """Load a Lightning checkpoint's trainable weights (keys `embedder.<...>`) into the embedder; all must match."""
    try:  # tensors and plain containers only: a checkpoint from elsewhere must not run code
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r}: refused: the checkpoint holds objects other than tensors and plain values "
            f"(loading them would run code): {str(err).splitlines()[-1] if str(err) else err}"
        ) from err
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"ckpt_path={ckpt_path!r}: cannot read checkpoint: {err}") from err
    state = {k.removeprefix("embedder."): v for k, v in checkpoint.get("state_dict", {}).items()}
    if not state:
        raise ConfigError(f"ckpt_path={ckpt_path!r}: checkpoint holds no weights")
    result = embedder.load_state_dict(state, strict=False)
    trainable = {name for name, p in embedder.named_parameters() if p.requires_grad}
    missing = sorted(trainable & set(result.missing_keys))
    if result.unexpected_keys or missing:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} does not match model.lora of this config: "
            f"unexpected {result.unexpected_keys[:3]}, missing {missing[:3]}"
        )
    log.info("loaded %d trained tensors from %s", len(state), ckpt_path)


def latest_run(log_dir: str | Path) -> Path:
    """The newest finished training run (a folder with metrics.json) under `<log_dir>/train/runs/`."""
    runs = sorted(p.parent for p in Path(log_dir).glob("train/runs/*/metrics.json"))
    if not runs:
        raise ConfigError(f"run_dir=latest: no finished training run under {Path(log_dir) / 'train' / 'runs'}")
    return runs[-1]


def load_export_source(cfg: DictConfig, require_weights: bool = True) -> ExportSource:
    """Build the training Embedder from `run_dir` (its config and adapter/checkpoint) or from the config groups."""
    run_dir = Path(cfg.run_dir) if cfg.get("run_dir") else None
    if cfg.get("run_dir") == "latest":
        run_dir = latest_run(cfg.paths.log_dir)
        log.info("run_dir=latest: %s", run_dir)
    adapter_path, ckpt_path = cfg.get("adapter_path"), cfg.get("ckpt_path")
    model_cfg = cfg
    if run_dir is not None:
        model_cfg = load_run_config(run_dir, cfg.paths)
        if not adapter_path and not ckpt_path:
            if (run_dir / "adapter" / "adapter_config.json").is_file():
                adapter_path = str(run_dir / "adapter")
            elif (run_dir / "checkpoints" / "last.ckpt").is_file():
                ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")
            else:
                raise ConfigError(f"run_dir={str(run_dir)!r}: neither adapter/ nor checkpoints/last.ckpt found")
    if adapter_path and ckpt_path:
        raise ConfigError("give adapter_path or ckpt_path, not both")
    if require_weights and not (adapter_path or ckpt_path):
        raise ConfigError("nothing to export: set run_dir, adapter_path or ckpt_path")
    with open_dict(model_cfg):
        model_cfg.model.gradient_checkpointing = False
        model_cfg.name = cfg.get("name")
    embedder = build_embedder(model_cfg, adapter_path=adapter_path, trainable=False, new_lora=bool(ckpt_path))
    if ckpt_path:
        load_checkpoint(embedder, ckpt_path)
    embedder.eval()
    embedder.requires_grad_(False)
    return ExportSource(
        model_cfg,
        embedder,
        run_dir=run_dir,
        adapter_path=adapter_path,
        ckpt_path=ckpt_path,
        records=run_records(run_dir),
        choices=run_choices(run_dir),
    )
