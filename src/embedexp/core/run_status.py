"""`<run>/run_status.json`: whether a run finished, failed or was interrupted, why, and its last step.

Written atomically as `running` when training starts, its step refreshed at every checkpoint, and set to `finished`,
`failed` or `interrupted` (with the reason) when training ends. A run killed without cleanup (SIGKILL, out of memory)
keeps `running` and the step of its last checkpoint: the report lists it as unfinished either way.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from embedexp.core.atomic import atomic_write_text

FILE = "run_status.json"
RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
# exit codes the W&B run ends with: a shell's 128 + signal for interruptions, 1 for failures
EXIT_CODES = {FINISHED: 0, FAILED: 1, INTERRUPTED: 130}


def _now() -> str:
    """UTC time in ISO format."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_status(folder: str | Path) -> dict | None:
    """The run status of a run folder, or None when it has no (readable) `run_status.json`."""
    path = Path(folder) / FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def classify(error: BaseException, trainer: L.Trainer | None = None) -> tuple[str, str, int]:
    """(status, reason, exit code) of a training run that raised `error`."""
    if isinstance(error, SIGTERMException):
        return INTERRUPTED, "SIGTERM", 143
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, SystemExit) and getattr(trainer, "interrupted", 0)):
        return INTERRUPTED, "KeyboardInterrupt", 130
    reason = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return FAILED, reason[:500], EXIT_CODES[FAILED]


class RunStatus(L.Callback):
    """Keeps `run_status.json` of one run folder current (rank 0 writes): `running` from setup, the step at every
    checkpoint, then `finished` at the end of fit or `failed` / `interrupted` with the reason when it raises."""

    def __init__(self, folder: str | Path, run_name: str | None = None, enabled: bool = True) -> None:
        """`run_name`: recorded in the file; `enabled`: False on ranks other than 0 (set again at setup)."""
        self.path = Path(folder) / FILE
        self.run_name, self.enabled = run_name, enabled
        self.record: dict = {}

    def _write(self) -> None:
        """Replace the file atomically."""
        if self.enabled:
            atomic_write_text(self.path, json.dumps(self.record, indent=2))

    def start(self) -> None:
        """Mark the run as running (a resumed run overwrites its earlier status)."""
        self.record = {"status": RUNNING, "reason": None, "step": 0, "run_name": self.run_name, "started": _now()}
        self._write()

    def end(self, status: str, reason: str | None, step: int | None) -> None:
        """Record how the run ended."""
        if not self.record:
            self.start()
        self.record.update(status=status, reason=reason, ended=_now())
        if step is not None:
            self.record["step"] = int(step)
        self._write()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """The run is running (written by rank 0)."""
        self.enabled = trainer.is_global_zero
        self.start()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Refresh the step at every checkpoint: a run killed later resumes from (at least) here."""
        if self.record.get("status") == RUNNING:
            self.record["step"] = int(trainer.global_step)
            self._write()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The run finished."""
        self.end(FINISHED, None, trainer.global_step)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """The run failed or was interrupted: say why and at which step."""
        status, reason, _ = classify(exception, trainer)
        self.end(status, reason, trainer.global_step)
