"""What to export: a run folder, an adapter folder or a Lightning checkpoint, rebuilt as the training Embedder
(`embedexp.export.resolve.open_model`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from embedexp.core.errors import ConfigError
from embedexp.export.resolve import open_model
from embedexp.export.runs import (  # noqa: F401  (re-exported: the run-folder helpers lived here)
    backbone_slug,
    class_slug,
    latest_run,
    load_checkpoint,
    load_run_config,
    run_choices,
    run_records,
)
from embedexp.model.embedder import Embedder


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


def load_export_source(cfg: DictConfig, require_weights: bool = True) -> ExportSource:
    """The training Embedder of the model the config names (`embedexp.export.resolve.open_model`), with its run's
    records."""
    opened = open_model(cfg, require_weights=require_weights)
    if opened.embedder is None:
        raise ConfigError(f"model_path={opened.path!r}: a {opened.kind} folder is already exported; name its run")
    model_cfg = opened.cfg
    with open_dict(model_cfg):
        model_cfg.name = cfg.get("name")
    return ExportSource(
        model_cfg,
        opened.embedder,
        run_dir=opened.run_dir,
        adapter_path=opened.adapter_path,
        ckpt_path=opened.ckpt_path,
        records=run_records(opened.run_dir),
        choices=(opened.embedder.manifest or {}).get("choices") if opened.saved else run_choices(opened.run_dir),
    )
