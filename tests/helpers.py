"""Test-only Lightning callbacks, importable by training subprocesses started from the project root."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """Send this process `signal_name` once `global_step` reaches `step` (simulates a crash or preemption)."""

    def __init__(self, step: int, signal_name: str = "SIGKILL") -> None:
        """`signal_name`: SIGKILL (no cleanup possible) or SIGTERM (Lightning stops after the current step)."""
        self.step, self.signal = step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Signal ourselves at the chosen step."""
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)
