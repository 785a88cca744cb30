"""What every command does before it builds anything: config checks, threads, `auto` precision, provenance.json,
seeds."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from embedexp.core.atomic import atomic_write_text
from embedexp.core.hardware import configure_threads, resolve_config_precisions
from embedexp.core.provenance import provenance
from embedexp.core.validation import check_config

PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class RunSetup:
    """A run about to be built: its config with `auto` precisions resolved, provenance and start time."""

    cfg: DictConfig  # a copy: the caller's config is left as it was composed
    provenance: dict
    started: float  # time.perf_counter() at the start
    precisions: dict[str, str]  # resolved precision per phase ({"train": "bf16-mixed", "eval": "bf16"})

    @property
    def output_dir(self) -> Path:
        """The run folder."""
        return Path(self.cfg.paths.output_dir)


def setup_run(cfg: DictConfig) -> RunSetup:
    """Check the config's types and ranges (nothing is written when they are wrong), set torch's threads, resolve
    `auto` precisions (bf16 only where faster here), write provenance.json (the code and machine as they were when
    the run started) and seed every RNG (configs without `seed`: none)."""
    started = time.perf_counter()
    check_config(cfg)
    configure_threads(cfg.get("num_threads", "auto"))
    cfg = copy.deepcopy(cfg)
    precision = resolve_config_precisions(cfg)
    record = provenance(cfg.get("seed"), precision)
    atomic_write_text(Path(cfg.paths.output_dir) / PROVENANCE, json.dumps(record, indent=2))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    return RunSetup(cfg, record, started, precision)
