"""The machine a run is on: CPU threads, the precision that is fast here (`precision: auto`), and a record of both.

bf16 autocast is 2-3x faster than float32 on CPUs with AVX-512-BF16 / AMX and up to 68x *slower* on AVX2-only CPUs,
which emulate it. CPU flags do not say which case a machine is in reliably (virtual machines hide or fake them), so
`auto` times one probe matmul in both precisions, once per process, and picks bf16 only where it wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from embedexp.core.errors import ConfigError

log = logging.getLogger(__name__)

# Lightning `Trainer(precision=...)` values by alias; `auto` is resolved first.
TRAINER_PRECISIONS = {
    "32": "32-true", "fp32": "32-true", "32-true": "32-true",
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed", "bf16-true": "bf16-true",
    "16": "16-mixed", "fp16": "16-mixed", "16-mixed": "16-mixed", "16-true": "16-true",
    "64": "64-true", "64-true": "64-true",
}  # fmt: skip
# autocast while encoding (evaluation, encode, synthesis): `32` (none) or `bf16`
AUTOCAST_PRECISIONS = {"32": "32", "fp32": "32", "32-true": "32", "bf16": "bf16", "bf16-mixed": "bf16"}
PROBE_ENV = "EMBEDEXP_PRECISION_PROBE"  # the probe's result, inherited by child processes (DDP ranks, launchers)
MIN_SPEEDUP = 1.1  # bf16 must be at least this much faster to be worth its rounding
PROBE_SHAPE = (512, 576, 1536)  # tokens x hidden x MLP width of a small decoder's up projection


@dataclass(frozen=True)
class PrecisionProbe:
    """CPU seconds of one probe matmul on one thread, in float32 and under bf16 autocast."""

    fp32_s: float
    bf16_s: float
    threads: int
    shape: tuple[int, int, int] = PROBE_SHAPE

    @property
    def speedup(self) -> float:
        """How many times faster bf16 autocast ran than float32 (below 1: slower)."""
        return self.fp32_s / self.bf16_s if self.bf16_s > 0 else 0.0

    def gflops(self, seconds: float) -> float:
        """Throughput of the probe matmul at `seconds` per call."""
        m, k, n = self.shape
        return 2 * m * k * n / seconds / 1e9 if seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """JSON-ready record, with GFLOP/s and the speedup."""
        return {
            **asdict(self),
            "fp32_gflops": round(self.gflops(self.fp32_s), 2),
            "bf16_gflops": round(self.gflops(self.bf16_s), 2),
            "bf16_speedup": round(self.speedup, 4),
        }


def _seconds(fn) -> float:
    """CPU time of one call on this thread: unlike wall time, other processes sharing the CPU do not inflate it."""
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _best_of_interleaved(fp32, bf16, rounds: int = 7, budget_s: float = 1.0) -> tuple[float, float]:
    """Fastest fp32 and bf16 call over alternating rounds after a warm-up of each, within `budget_s`.

    Alternating keeps a load change on a shared machine from favouring one side; the minimum is the least disturbed
    call. An emulated bf16 call on an AVX2 CPU takes ~0.8 s: then the warm-up alone decides.
    """
    best_fp32, best_bf16 = _seconds(fp32), _seconds(bf16)
    spent = best_fp32 + best_bf16
    for _ in range(rounds):
        if spent > budget_s:
            break
        a, b = _seconds(fp32), _seconds(bf16)
        best_fp32, best_bf16, spent = min(best_fp32, a), min(best_bf16, b), spent + a + b
    return best_fp32, best_bf16


def run_probe() -> PrecisionProbe:
    """Time the probe matmul (a linear layer, as in a decoder) in float32 and under CPU bf16 autocast."""
    m, k, n = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(m, k, generator=generator), torch.randn(n, k, generator=generator)

    def fp32() -> torch.Tensor:
        return torch.nn.functional.linear(x, weight)

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.nn.functional.linear(x, weight)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, timed by its CPU time: the per-core speed ratio, robust to a busy machine
    try:
        with torch.inference_mode():
            fp32_s, bf16_s = _best_of_interleaved(fp32, bf16)
    finally:
        torch.set_num_threads(threads)
    return PrecisionProbe(fp32_s, bf16_s, 1)


_probe: PrecisionProbe | None = None


def cpu_probe() -> PrecisionProbe:
    """The probe of this process: measured once, or inherited from the parent through `EMBEDEXP_PRECISION_PROBE`."""
    global _probe
    if _probe is None:
        inherited = os.environ.get(PROBE_ENV)
        if inherited:
            fields = json.loads(inherited)
            _probe = PrecisionProbe(fields["fp32_s"], fields["bf16_s"], fields["threads"], tuple(fields["shape"]))
        else:
            _probe = run_probe()
            os.environ[PROBE_ENV] = json.dumps(asdict(_probe))
            log.info(
                "precision probe (%dx%dx%d matmul, %d thread, %s): fp32 %.1f GFLOP/s, bf16 autocast %.1f GFLOP/s "
                "(%.2fx)",
                *_probe.shape, _probe.threads, cpu_capability(), _probe.gflops(_probe.fp32_s),
                _probe.gflops(_probe.bf16_s), _probe.speedup,
            )  # fmt: skip
    return _probe


def auto_is_bf16(device: str = "cpu") -> bool:
    """Whether `auto` means bf16 here: on a GPU where it supports bf16; on the CPU where the probe says it wins."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_probe().speedup >= MIN_SPEEDUP


def resolve_precision(value, key: str, kind: str = "autocast", device: str = "cpu") -> str:
    """Canonical precision for config `key`: `kind='trainer'` gives a Lightning value, `'autocast'` gives 32 or bf16.

    `value` may be an int from the command line (`eval.precision=32`); `auto` asks `auto_is_bf16`.
    """
    table = TRAINER_PRECISIONS if kind == "trainer" else AUTOCAST_PRECISIONS
    text = str(value).strip().lower() if value is not None else "auto"
    if text == "auto":
        chosen = "bf16" if auto_is_bf16(device) else "32"
        resolved = table[chosen]
        _log_auto_choice(key, resolved, device)
        return resolved
    if text not in table:
        raise ConfigError(f"{key}={value!r}: not a precision; use auto or one of {', '.join(sorted(table))}")
    return table[text]


_logged: set[tuple[str, str]] = set()


def _log_auto_choice(key: str, resolved: str, device: str) -> None:
    """Say once per key what `auto` chose and why."""
    if (key, resolved) in _logged:
        return
    _logged.add((key, resolved))
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        log.info("%s=auto -> %s (GPU bf16 support: %s)", key, resolved, torch.cuda.is_bf16_supported())
        return
    probe = cpu_probe()
    log.info("%s=auto -> %s (bf16 autocast %.2fx the speed of fp32 on this CPU)", key, resolved, probe.speedup)


def autocast_for(precision, device: torch.device, key: str = "eval.precision") -> contextlib.AbstractContextManager:
    """Autocast context for encoding: `bf16` runs matmuls in bfloat16, `32` leaves float32, `auto` picks the faster."""
    resolved = resolve_precision(precision, key, "autocast", device.type)
    return torch.autocast(device.type, dtype=torch.bfloat16) if resolved == "bf16" else contextlib.nullcontext()


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype matmuls run in under a resolved trainer or autocast precision (bf16-mixed, bf16, 32-true, ...)."""
    return (
        torch.bfloat16
        if "bf16" in str(precision)
        else torch.float16
        if str(precision).startswith("16")
        else torch.float32
    )


def frozen_weights_dtype(precisions: dict[str, str]) -> torch.dtype | None:
    """bfloat16 when every resolved precision of a run autocasts to bf16 (frozen weights can then be stored in bf16,
    `embedexp.model.backbone.hold_frozen_weights_in`), else None: keep the checkpoint's type."""
    values = set(precisions.values())
    return torch.bfloat16 if values and values <= {"bf16", "bf16-mixed"} else None


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs this container may use by its cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None when unlimited."""
    root = Path(root)
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota = int(quota_file.read_text())
            return None if quota <= 0 else quota / int(period_file.read_text())
    except (OSError, ValueError):
        return None
    return None


def available_cores(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """Physical cores this process may run on: its CPU affinity, less SMT siblings, capped by the cgroup quota."""
    import psutil

    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        allowed = os.cpu_count() or 1
    logical = psutil.cpu_count(logical=True) or allowed
    physical = psutil.cpu_count(logical=False) or logical
    cores = max(1, allowed // max(1, round(logical / physical)))
    limit = cgroup_cpu_limit(cgroup_root)
    return max(1, min(cores, int(limit))) if limit else cores


def configure_threads(setting, key: str = "num_threads") -> int:
    """Set torch's intra-op threads: `auto` (or null) = `available_cores()`, an int = that many; returns the count."""
    if setting is None or str(setting).lower() == "auto":
        threads = available_cores()
    else:
        try:
            threads = int(setting)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={setting!r}: use auto or a positive number of threads") from None
        if threads < 1:
            raise ConfigError(f"{key}={setting!r}: use auto or a positive number of threads")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """torch's CPU kernel class here (e.g. AVX2, AVX512)."""
    return torch.backends.cpu.get_cpu_capability()


def machine_info(**precisions: str) -> dict:
    """What a run's speed and numerics depend on: CPU model, capability, threads, GPU, resolved precisions, probe."""
    info = {
        "cpu_model": cpu_model(),
        "cpu_capability": cpu_capability(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "precision": dict(precisions),
    }
    if _probe is not None or os.environ.get(PROBE_ENV):
        info["precision_probe"] = cpu_probe().as_dict()
    return info


def accelerator_device(accelerator) -> str:
    """`cpu` or `cuda` for a Lightning accelerator name (`auto` is cuda where a GPU is visible)."""
    name = str(accelerator or "auto").lower()
    if name in ("gpu", "cuda"):
        return "cuda"
    return "cuda" if name == "auto" and torch.cuda.is_available() else "cpu"


def resolve_config_precisions(cfg) -> dict[str, str]:
    """Replace `trainer.precision` and `eval.precision` of a composed config by their resolved values, in place.

    Returns {"train": ..., "eval": ...} for the keys the config has; `auto` is decided by `auto_is_bf16`.
    """
    from omegaconf import open_dict

    resolved: dict[str, str] = {}
    with open_dict(cfg):
        trainer = cfg.get("trainer")
        device = accelerator_device(trainer.get("accelerator") if trainer else "cpu")
        if trainer is not None and "precision" in trainer:
            trainer.precision = resolved["train"] = resolve_precision(
                trainer.precision, "trainer.precision", "trainer", device
            )
        if cfg.get("eval") is not None and "precision" in cfg.eval:
            cfg.eval.precision = resolved["eval"] = resolve_precision(
                cfg.eval.precision, "eval.precision", "autocast", device
            )
    return resolved
