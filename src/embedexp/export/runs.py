"""Training-run folders and checkpoints: a run's saved config, records and choices, the newest finished run, and a
Lightning checkpoint's weights and manifest (read without running code)."""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.core.config import hydra_choices
from embedexp.core.errors import ConfigError
from embedexp.core.renamed import upgrade_run_config
from embedexp.model.embedder import Embedder

log = logging.getLogger(__name__)
RUN_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_CONFIG = Path(".hydra") / "hydra.yaml"


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
    cfg = upgrade_run_config(OmegaConf.load(path))  # saved under old names: read with today's
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


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A Lightning checkpoint's contents, tensors and plain values only (a checkpoint from elsewhere must not run
    code); its manifest is under `embedexp.model.manifest.CHECKPOINT_KEY`."""
    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r}: refused: the checkpoint holds objects other than tensors and plain values "
            f"(loading them would run code): {str(err).splitlines()[-1] if str(err) else err}"
        ) from err
    except (OSError, RuntimeError) as err:
        raise ConfigError(f"ckpt_path={ckpt_path!r}: cannot read checkpoint: {err}") from err


def load_checkpoint(embedder: Embedder, ckpt_path: str, checkpoint: dict[str, Any] | None = None) -> None:
    """Load a Lightning checkpoint's trainable weights (keys `embedder.<...>`) into the embedder; all must match."""
    checkpoint = read_checkpoint(ckpt_path) if checkpoint is None else checkpoint
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
    """The newest finished training run (a folder with metrics.json) under `<log_dir>/<task>/runs/`, any task
    (`train`, `smoke`, ...): run folders are named by their start time."""
    runs = [p.parent for p in Path(log_dir).glob("*/runs/*/metrics.json")]
    if not runs:
        raise ConfigError(f"run_dir=latest: no finished training run under {Path(log_dir) / '*' / 'runs'}")
    return max(runs, key=lambda run: (run.name, run.parent.parent.name))
