"""Progress of a long phase (evaluation, encoding, synthesis, export): a rich bar on a terminal, else a log line
every `interval_s` seconds, so `make run > log` and CI logs show where the time goes.

`EMBEDEXP_PROGRESS=bar|log|off` overrides the choice (default: bar when stderr is a terminal, else log).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger("embedexp.core.progress")
LOG_INTERVAL_S = 30.0


def progress_mode() -> str:
    """`bar` on a terminal, `log` elsewhere, or what EMBEDEXP_PROGRESS says."""
    mode = os.environ.get("EMBEDEXP_PROGRESS", "").strip().lower()
    if mode in ("bar", "log", "off"):
        return mode
    return "bar" if sys.stderr.isatty() else "log"


def format_duration(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts done units of a phase of `total` units and shows count, rate and ETA."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "texts",
        initial: int = 0,
        mode: str | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`mode`: bar, log or off (None: `progress_mode()`); `interval_s`: None = LOG_INTERVAL_S; `clock` for tests."""
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.initial, self.mode, self.clock = initial, mode or progress_mode(), clock
        self.interval_s = LOG_INTERVAL_S if interval_s is None else interval_s
        self.start = self.last_log = clock()
        self.note = ""
        self.lines = 0
        self._bar = None
        if self.mode == "bar":
            self._bar = _RichBar(total, desc, unit, initial)

    def __enter__(self) -> Progress:
        """Use as a context manager; the bar closes on exit."""
        return self

    def __exit__(self, *exc) -> None:
        """Close the bar (and log the summary line in log mode)."""
        self.close()

    @property
    def rate(self) -> float:
        """Units per second since the start (units done before the start, e.g. on resume, not counted)."""
        elapsed = self.clock() - self.start
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at the current rate; None when unknown."""
        if not self.total or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def describe(self, note: str) -> None:
        """Extra detail shown after the counts (e.g. the current shard)."""
        self.note = note
        if self._bar is not None:
            self._bar.describe(note)
        self._maybe_log()

    def update(self, n: int = 1) -> None:
        """`n` more units are done."""
        self.done += n
        if self._bar is not None:
            self._bar.advance(n)
        self._maybe_log()

    def line(self) -> str:
        """`desc: done/total unit (rate unit/s, ETA m:ss) note`."""
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        eta = self.eta_s()
        timing = f"{self.rate:.1f} {self.unit}/s" + (f", ETA {format_duration(eta)}" if eta is not None else "")
        return f"{self.desc}: {count} {self.unit} ({timing})" + (f" {self.note}" if self.note else "")

    def _maybe_log(self) -> None:
        """In log mode, write a line when `interval_s` passed since the last one."""
        if self.mode != "log" or self.clock() - self.last_log < self.interval_s:
            return
        self.last_log = self.clock()
        self.lines += 1
        log.info("%s", self.line())

    def close(self) -> None:
        """End the phase: close the bar, or (log mode, after a periodic line) log the total time."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "log" and self.lines:
            log.info("%s: %d %s in %s", self.desc, self.done, self.unit, format_duration(self.clock() - self.start))
            self.lines = 0


class _RichBar:
    """A rich progress bar in the style of Lightning's RichProgressBar (count, rate, elapsed and remaining time)."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int) -> None:
        """Start the bar."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress
        from rich.text import Text

        class RateColumn(ProgressColumn):
            """Units per second."""

            def render(self, task) -> Text:
                """`12.3 texts/s` once rich has a speed estimate."""
                return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "", style="progress.data.speed")

        self.progress = RichProgress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(desc, total=total, completed=initial, note="")

    def advance(self, n: int) -> None:
        """Move the bar on."""
        self.progress.advance(self.task, n)

    def describe(self, note: str) -> None:
        """Set the trailing note."""
        self.progress.update(self.task, note=note)

    def close(self) -> None:
        """Stop rendering."""
        self.progress.stop()


def encode_with_progress(
    encode: Callable[[list[str]], np.ndarray], texts: list[str], desc: str, chunk_size: int = 256
) -> np.ndarray:
    """Call `encode` on chunks of `texts` (sorted by length, so each chunk pads little) and show progress;
    rows come back in input order. For encoders without progress of their own (exported folders)."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = []
    with Progress(len(texts), desc, "texts") as meter:
        for start in range(0, len(order), chunk_size):
            picked = order[start : start + chunk_size]
            parts.append(np.asarray(encode([texts[i] for i in picked]), dtype=np.float32))
            meter.update(len(picked))
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    stacked = np.concatenate(parts)
    result = np.empty_like(stacked)
    result[np.asarray(order)] = stacked
    return result
