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


class KillableNoise:
    """A noise generator that SIGKILLs its own process on its Nth shard, N = $EMBEDEXP_TEST_KILL_AT_CALL."""

    def __new__(cls, **kwargs):
        """Build a NoiseGenerator subclass instance (imported lazily: only synthesis subprocesses need it)."""
        from embedexp.synthesis.generators import NoiseGenerator

        class _Killable(NoiseGenerator):
            calls = 0

            def generate(self, texts, seed, progress=None):
                """Die like a preempted job (no cleanup possible) when the chosen call comes."""
                self.calls += 1
                if str(self.calls) == os.environ.get("EMBEDEXP_TEST_KILL_AT_CALL"):
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().generate(texts, seed, progress)

        return _Killable(**kwargs)


class CountSteps(L.Callback):
    """Record the global step a fit starts from and the training steps it runs (the latest instance: `last`)."""

    last: CountSteps | None = None

    def __init__(self) -> None:
        """Nothing counted yet."""
        self.entry_step, self.steps = None, 0
        CountSteps.last = self

    def on_train_start(self, trainer, pl_module) -> None:
        """The step restored from a checkpoint (0 for a fresh run)."""
        self.entry_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """One more step run by this process."""
        self.steps += 1
