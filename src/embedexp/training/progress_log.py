"""Training progress off a terminal: a log line every ~30 s (step, rate, ETA, loss) where no bar can be drawn."""

from __future__ import annotations

import lightning as L

from embedexp.core.progress import LOG_INTERVAL_S, Progress, progress_mode


class ProgressLog(L.Callback):
    """Logs `train: step/total steps (rate, ETA) loss=...` every `interval_s` when stderr is not a terminal.

    On a terminal Lightning's own progress bar shows the same; `train.py` turns that bar off elsewhere, since its
    carriage-return updates flood log files.
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        """`interval_s`: seconds between lines."""
        super().__init__()
        self.interval_s = interval_s
        self.progress: Progress | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start counting optimizer steps (from the resumed step, if any)."""
        if progress_mode() != "log" or not trainer.is_global_zero:
            return
        total = trainer.estimated_stepping_batches
        total = int(total) if total != float("inf") else None
        self.progress = Progress(total, "train", "steps", initial=trainer.global_step, interval_s=self.interval_s)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """Count the step; the line carries the latest loss."""
        if self.progress is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        note = f"loss={float(loss):.4f}" if loss is not None else ""
        self.progress.note = note
        self.progress.update(trainer.global_step - self.progress.done)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the total time."""
        if self.progress is not None:
            self.progress.close()
            self.progress = None
