"""The matmul peak MFU divides by: measured robustly, kept per machine, and never below a rate a run achieved.

One short timing on a shared machine can come out at half the true peak (another process had the cores), and an MFU
over it above 1. So the peak is the best of several timed rounds of large matmuls (after an untimed warm-up of each
shape) at the run's threads and compute dtype; it is kept on disk per (CPU model, kernel capability, threads, dtype,
torch version) and only ever raised there: the best rate ever seen on that CPU is the better estimate of what it can
do. A run raises its own copy again when one of its timed intervals achieved more (`Peak.raised_to`), so
MFU = achieved / peak <= 1 by construction, and `Peak.source` says where the value came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from embedexp.core.atomic import atomic_write_text
from embedexp.core.hardware import cpu_capability, cpu_model

log = logging.getLogger(__name__)

PEAK_SHAPES = ((2048, 2048, 2048), (2048, 1024, 4096))  # tokens x in x out: large enough to reach the kernels' best
ROUNDS = 5  # timed rounds; each times every shape once and keeps its faster
MEASURED, CACHED, OBSERVED = "measured", "cache", "observed"  # where a peak's value came from


@dataclass(frozen=True)
class PeakKey:
    """What a matmul peak depends on: the CPU, torch's kernels for it, the threads and the compute dtype."""

    cpu_model: str
    cpu_capability: str
    threads: int
    dtype: str
    torch_version: str

    @classmethod
    def here(cls, dtype: torch.dtype, threads: int | None = None) -> PeakKey:
        """The key of this machine and torch at `threads` (default: this process's torch threads)."""
        threads = torch.get_num_threads() if threads is None else threads
        return cls(cpu_model(), cpu_capability(), threads, str(dtype).removeprefix("torch."), torch.__version__)

    def file_name(self) -> str:
        """The cache file of this key: readable dtype and threads, a digest of the rest."""
        digest = hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.dtype}-{self.threads}t-{digest}.json"


@dataclass(frozen=True)
class Peak:
    """The FLOP/s MFU divides by (`flops`), the FLOP/s of this process's timed rounds, the best an earlier process
    saw on this machine (`cached`, 0: none) and the `source` of `flops` (measured, cache or observed)."""

    flops: float
    rounds: tuple[float, ...]
    cached: float
    key: PeakKey
    source: str

    @property
    def measured(self) -> float:
        """Best FLOP/s of this process's timed rounds."""
        return max(self.rounds, default=0.0)

    @property
    def spread(self) -> float:
        """Relative spread of the timed rounds, (max - min) / max: 0 on a quiet machine, near 1 on a busy one."""
        return (max(self.rounds) - min(self.rounds)) / max(self.rounds) if self.rounds and max(self.rounds) else 0.0

    @property
    def before_run(self) -> float:
        """The peak before any interval of the run raised it: the best of the measurement and the cache."""
        return max(self.measured, self.cached)

    def raised_to(self, rate: float) -> Peak:
        """This peak, raised to `rate` (FLOP/s a timed interval achieved) if that is more: then the peak was
        underestimated and the achieved rate is the better estimate."""
        if rate <= self.flops:
            return self
        return dataclasses.replace(self, flops=rate, source=OBSERVED)

    def utilization(self, rate: float) -> float:
        """`rate` as a share of the peak (0 without a peak)."""
        return rate / self.flops if self.flops > 0 else 0.0

    def record(self) -> dict:
        """JSON-ready record: the peak, its source, the rounds' min/median/max and the key, in TFLOP/s."""
        rounds = self.rounds or (0.0,)
        return {
            "tflops": self.flops / 1e12,
            "source": self.source,
            "measured_tflops": self.measured / 1e12,
            "rounds_tflops": {
                "min": min(rounds) / 1e12,
                "median": statistics.median(rounds) / 1e12,
                "max": max(rounds) / 1e12,
            },
            "spread": self.spread,
            "cached_tflops": self.cached / 1e12,
            "raised": self.flops / self.before_run if self.before_run else 1.0,
            **dataclasses.asdict(self.key),
        }


def time_rounds(dtype: torch.dtype, rounds: int = ROUNDS, shapes=PEAK_SHAPES) -> list[float]:
    """FLOP/s of each timed round (the faster of its shapes), after one untimed call of each shape (kernel selection,
    weight packing), in wall time on this process's torch threads, as training steps are timed."""
    generator = torch.Generator().manual_seed(0)
    operands = [
        (torch.randn(m, k, generator=generator).to(dtype), torch.randn(k, n, generator=generator).to(dtype))
        for m, k, n in shapes
    ]
    results = []
    with torch.inference_mode():
        for a, b in operands:
            a @ b  # warm-up
        for _ in range(rounds):
            best = 0.0
            for a, b in operands:
                start = time.perf_counter()
                a @ b
                best = max(best, 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / max(time.perf_counter() - start, 1e-9))
            results.append(best)
    return results


def read_cached(folder: Path, key: PeakKey) -> float:
    """The best FLOP/s an earlier process measured for `key` under `folder` (0: none, or an unreadable file)."""
    path = folder / key.file_name()
    try:
        record = json.loads(path.read_text())
        return float(record["flops"]) if record.get("key") == dataclasses.asdict(key) else 0.0
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def write_if_higher(folder: Path, key: PeakKey, flops: float, rounds: list[float]) -> bool:
    """Keep `flops` as the best for `key` if it beats what the file holds now (re-read just before, so a
    concurrent process's higher value is not overwritten but for a narrow race); written atomically."""
    if flops <= read_cached(folder, key):
        return False
    record = {
        "key": dataclasses.asdict(key),
        "flops": flops,
        "rounds": rounds,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(folder / key.file_name(), json.dumps(record, indent=2))
    return True


_measured: dict[PeakKey, tuple[float, ...]] = {}


def matmul_peak(dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None, rounds: int = ROUNDS) -> Peak:
    """The peak of this machine at `dtype` on this process's torch threads: timed once per process and key, combined
    with the best on disk under `cache_dir` (None: no disk cache), which a better measurement raises."""
    key = PeakKey.here(dtype)
    if key not in _measured:
        _measured[key] = tuple(time_rounds(dtype, rounds))
    measured = _measured[key]
    best = max(measured)
    cached = 0.0
    if cache_dir is not None:
        folder = Path(cache_dir)
        cached = read_cached(folder, key)
        try:
            write_if_higher(folder, key, best, list(measured))
        except OSError as error:  # a read-only cache costs the next run its better estimate, not this run
            log.warning("matmul peak not cached in %s: %s", folder, error)
    peak = Peak(max(best, cached), measured, cached, key, MEASURED if best >= cached else CACHED)
    log.info(
        "matmul peak (%s, %d threads): %.0f GFLOP/s (%s; this process's rounds: min %.0f, max %.0f, spread %.0f%%; "
        "cached best %.0f)",
        key.dtype, key.threads, peak.flops / 1e9, peak.source, min(measured) / 1e9, best / 1e9, 100 * peak.spread,
        cached / 1e9,
    )  # fmt: skip
    return peak


def matmul_peak_flops(dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None) -> float:
    """The peak's FLOP/s (`matmul_peak(dtype, cache_dir).flops`)."""
    return matmul_peak(dtype, cache_dir).flops
