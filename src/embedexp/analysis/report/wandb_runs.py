"""Read W&B offline runs with W&B's own reader: `wandb leet inspect --summary --json <run folder>` (wandb ≥ 0.31).

It prints the run's config, summary, state and exit code as one JSON object. A run counts as finished only when it
exited with code 0 *and* its summary says `run/status: finished` (what `embedexp.cli.train` records): older runs closed
with code 0 even when SIGTERM stopped them, so a run without that status is never read as finished.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT_S = 60


@dataclass
class WandbRun:
    """What the report needs from an offline run."""

    path: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None  # None: the run never finished (killed, or still running)
    state: str | None = None

    @property
    def finished(self) -> bool:
        """Exited with 0 and recorded `run/status: finished`."""
        return self.exit_code == 0 and self.summary.get("run/status") == "finished"


def wandb_command() -> str:
    """The `wandb` executable of this environment."""
    beside = Path(sys.executable).with_name("wandb")
    return str(beside) if beside.is_file() else (shutil.which("wandb") or "wandb")


def read_run(run_dir: Path) -> WandbRun:
    """Config, summary, state and exit code of one run folder (raises ValueError when W&B cannot read it)."""
    try:
        result = subprocess.run(
            [wandb_command(), "leet", "inspect", "--summary", "--json", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ValueError(f"wandb leet inspect failed: {err}") from err
    if result.returncode != 0:
        raise ValueError(f"wandb leet inspect exited {result.returncode}: {result.stderr.strip()[-300:]}")
    data = json.loads(result.stdout)
    return WandbRun(
        Path(run_dir), data.get("config") or {}, data.get("summary") or {}, data.get("exit_code"), data.get("state")
    )


def find_runs(root: Path) -> list[Path]:
    """Every W&B run folder (holding a `.wandb` log) under `root`, oldest first."""
    logs = Path(root).rglob("*.wandb")
    return sorted({p.parent for p in logs if p.parent.name.startswith(("offline-run-", "run-"))})
