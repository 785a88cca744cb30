"""A checkpoint written when training stops early (SIGTERM, Ctrl-C, an error), for `ckpt_path=last`."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

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
        """Write the checkpoint (every rank takes part; the strategy writes it once)."""
        trainer.save_checkpoint(self.path)
        log.warning("training stopped (%s); checkpoint saved to %s", type(exception).__name__, self.path)
