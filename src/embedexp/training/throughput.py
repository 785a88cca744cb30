"""Training throughput: real tokens per second and model FLOPs utilization (MFU), logged and in metrics.json.

MFU = model FLOPs of the steps (`embedexp.model.flops.FlopCounter`, real tokens only, frozen layers the prefix cache
served not counted) / their wall time / the machine's matmul peak at the run's precision on the run's threads
(`embedexp.core.peak.matmul_peak`). The peak is raised to any rate a timed interval of the run achieved (a step, or
the steps so far together): a faster interval proves the measured peak too low, so MFU <= 1 by construction, and
`throughput/peak_raised` > 1 says it happened. The first `warmup_steps` steps (kernel selection, `torch.compile`)
are timed apart as `throughput/warmup_s`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L

from embedexp.core.hardware import compute_dtype
from embedexp.core.peak import OBSERVED, Peak, matmul_peak
from embedexp.model.flops import FlopCounter
from embedexp.model.packing import plan_length_groups

log = logging.getLogger(__name__)


class ThroughputMonitor(L.Callback):
    """Times every training step and logs `throughput/{tokens_per_s,tflops,mfu,padding,cached_share}` averaged over
    the run (`cached_share`: tokens whose frozen layers the prefix cache served) and the peak MFU divides by
    (`throughput/peak_*`; its full record is `throughput/peak` in metrics.json)."""

    def __init__(self, warmup_steps: int = 1, peak_cache_dir: str | None = None) -> None:
        """`warmup_steps`: first steps left out of the averages (their time is logged as `throughput/warmup_s`);
        `peak_cache_dir`: where the best matmul peak of each machine is kept (None: measured by each process only)."""
        super().__init__()
        self.warmup_steps, self.peak_cache_dir = warmup_steps, peak_cache_dir
        self.seconds = self.flops = self.warmup_s = self.cached_tokens = 0.0
        self.tokens = self.computed_tokens = self.steps = 0
        self.peak: Peak | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Count the model as it trains (which layers adapt) and measure the matmul peak at the run's precision."""
        self.counter = FlopCounter.of(pl_module.embedder.model)
        self.peak = matmul_peak(compute_dtype(trainer.precision), self.peak_cache_dir)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        """Note the step's token lengths (the module's `step_token_lengths`) and the prefix cache's counters."""
        embedder = pl_module.embedder
        self.lengths = pl_module.step_token_lengths(batch)
        cache = embedder.prefix_cache if embedder.train_with_prefix_cache else None
        self.cache_counts = (cache.hits, cache.misses) if cache is not None else None
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """Add the step to the run's totals, raise the peak to any rate achieved, and log the averages."""
        seconds = time.perf_counter() - self.start
        self.steps += 1
        if self.steps <= self.warmup_steps:
            self.warmup_s += seconds
            pl_module.log("throughput/warmup_s", self.warmup_s, on_step=True, on_epoch=False)
            return
        embedder = pl_module.embedder
        cached = self.cached_share(embedder)
        flops = self.counter.training_step(self.lengths, cached)
        self.seconds += seconds
        self.flops += flops
        self.tokens += sum(self.lengths)
        self.cached_tokens += cached * sum(self.lengths)
        self.computed_tokens += self.computed(self.lengths, embedder.packed)
        self.observe(flops / max(seconds, 1e-9), f"step {trainer.global_step}")
        self.observe(self.flops / max(self.seconds, 1e-9), None)  # exact: MFU <= 1 even at the last bit
        pl_module.log_dict(self.averages(), on_step=True, on_epoch=False)

    def observe(self, rate: float, interval: str | None) -> None:
        """Raise the peak to `rate` (model FLOP/s of a timed `interval`) if it is higher; the first raise of a step is
        logged as a warning (None: the average of the steps, above the peak only by rounding after such a raise)."""
        before = self.peak
        self.peak = before.raised_to(rate)
        if self.peak is not before and interval is not None:
            (log.info if before.source == OBSERVED else log.warning)(
                "%s ran at %.2f GFLOP/s, above the matmul peak of %.2f GFLOP/s: the peak was underestimated (a busy "
                "machine while it was timed?); MFU now divides by the achieved rate",
                interval, rate / 1e9, before.flops / 1e9,
            )  # fmt: skip

    def cached_share(self, embedder) -> float:
        """Share of this step's texts whose frozen-layer outputs an earlier step computed (the prefix cache served
        them): each text's frozen layers count once per step, so a second pass within the step (GradCache's, or the
        cache's first self-check) that reuses this step's own outputs is no cache hit."""
        if self.cache_counts is None or embedder.prefix_cache is None or not self.lengths:
            return 0.0
        hits = embedder.prefix_cache.hits - self.cache_counts[0]
        misses = embedder.prefix_cache.misses - self.cache_counts[1]
        if hits + misses == 0:  # the cache was not consulted (e.g. switched off): every layer ran
            return 0.0
        return 1 - min(misses, len(self.lengths)) / len(self.lengths)

    @staticmethod
    def computed(lengths: list[int], packed: bool) -> int:
        """Tokens the linear layers ran on: the real ones when packed, else each length group's rows x width."""
        if packed:
            return sum(lengths)
        return sum(len(group) * max(lengths[i] for i in group) for group in plan_length_groups(lengths))

    def averages(self) -> dict[str, float]:
        """Real tokens/s, model TFLOP/s, MFU and the share of computed tokens that were padding, over the run, and the
        peak: the one MFU divides by, this process's measurement and its spread, and how far the run raised it."""
        seconds = max(self.seconds, 1e-9)
        achieved = self.flops / seconds
        peak = self.peak
        return {
            "throughput/tokens_per_s": self.tokens / seconds,
            "throughput/tflops": achieved / 1e12,
            "throughput/mfu": peak.utilization(achieved),
            "throughput/padding": 1 - self.tokens / max(self.computed_tokens, 1),
            "throughput/cached_share": self.cached_tokens / max(self.tokens, 1),
            "throughput/peak_tflops": peak.flops / 1e12,
            "throughput/peak_measured_tflops": peak.measured / 1e12,
            "throughput/peak_spread": peak.spread,
            "throughput/peak_raised": peak.flops / peak.before_run if peak.before_run else 1.0,
        }

    def run_metrics(self) -> dict[str, Any]:
        """The peak's full record for metrics.json (`throughput/peak`: source, rounds, cached best, machine key)."""
        return {"throughput/peak": self.peak.record()} if self.peak is not None else {}
