"""Checkpoints: one written when training stops early (SIGTERM, Ctrl-C, an error), for `ckpt_path=last`; an atomic
checkpoint writer (a kill or a full disk mid-write leaves the previous checkpoint); and which checkpoint resumes."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from embedexp.core.atomic import atomic_file
from embedexp.core.errors import ConfigError

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(L.Callback):
    """Save `<dirpath>/<filename>.ckpt` from `on_exception` (Lightning raises on SIGTERM after the current step).

    Unlike Lightning's `OnExceptionCheckpoint`, its presence does not make `fit(ckpt_path=None)` resume
    implicitly from an older checkpoint found in the folder: a run resumes only when asked to.
    """

    def __init__(self, dirpath: str, filename: str = "on_exception") -> None:
        """Where the checkpoint goes."""
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Write the checkpoint (every rank takes part; the strategy writes it once); none before the first step:
        a run that took no step has nothing to resume."""
        if trainer.global_step == 0:
            return
        trainer.save_checkpoint(self.path)
        log.warning("training stopped (%s); checkpoint saved to %s", type(exception).__name__, self.path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint writer, but through a staging file renamed when complete.

    Lightning writes `last.ckpt` in place (serialized in memory, then written to the final path): a kill or a full
    disk during that write leaves a truncated checkpoint where the previous complete one was. Here the previous file
    stays until the new one is complete (`embedexp.core.atomic.atomic_file`).
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Write `checkpoint` beside `path`, then rename it over `path`."""
        with atomic_file(path) as staging:
            super().save_checkpoint(checkpoint, staging, storage_options)


def resolve_ckpt_path(cfg) -> str | None:
    """`ckpt_path=last`: the newest of this run's checkpoints/{last,on_exception}.ckpt; `auto`: the same, or none."""
    path = cfg.get("ckpt_path")
    if path in ("last", "auto"):
        folder = Path(cfg.paths.output_dir) / "checkpoints"
        found = [p for p in (folder / "last.ckpt", folder / "on_exception.ckpt") if p.is_file()]
        if path == "auto" and not found:
            return None
        path = str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else str(folder / "last.ckpt")
    if path and not Path(path).is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at {path}")
    return path
