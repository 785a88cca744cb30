"""Training throughput: real tokens per second and model FLOPs utilization (MFU), logged and in metrics.json.

MFU = model FLOPs of the steps (`embedexp.model.flops.FlopCounter`, real tokens only) / their wall time / the
machine's matmul peak at the run's precision on the run's threads (`embedexp.core.hardware.matmul_peak_flops`).
The first `warmup_steps` steps (kernel selection, `torch.compile`) are timed apart as `throughput/warmup_s`.
"""

from __future__ import annotations

import time

import lightning as L

from embedexp.core.hardware import compute_dtype, matmul_peak_flops
from embedexp.model.flops import FlopCounter
from embedexp.model.packing import plan_length_groups


class ThroughputMonitor(L.Callback):
    """Times every training step and logs `throughput/{tokens_per_s,tflops,mfu,padding,cached_share}` averaged over
    the run (`cached_share`: tokens whose frozen layers the prefix cache served)."""

    def __init__(self, warmup_steps: int = 1) -> None:
        """`warmup_steps`: first steps left out of the averages (their time is logged as `throughput/warmup_s`)."""
        super().__init__()
        self.warmup_steps = warmup_steps
        self.seconds = self.flops = self.warmup_s = self.cached_tokens = 0.0
        self.tokens = self.computed_tokens = self.steps = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Count the model as it trains (which layers adapt) and measure the matmul peak at the run's precision."""
        self.counter = FlopCounter.of(pl_module.embedder.model)
        self.peak = matmul_peak_flops(compute_dtype(trainer.precision))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        """Note the step's token lengths (the module's `step_token_lengths`) and the prefix cache's counters."""
        embedder = pl_module.embedder
        self.lengths = pl_module.step_token_lengths(batch)
        cache = embedder.prefix_cache if embedder.train_with_prefix_cache else None
        self.cache_counts = (cache.hits, cache.misses) if cache is not None else None
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """Add the step to the run's totals and log the averages."""
        seconds = time.perf_counter() - self.start
        self.steps += 1
        if self.steps <= self.warmup_steps:
            self.warmup_s += seconds
            pl_module.log("throughput/warmup_s", self.warmup_s, on_step=True, on_epoch=False)
            return
        embedder = pl_module.embedder
        self.seconds += seconds
        cached = self.cached_share(embedder)
        self.flops += self.counter.training_step(self.lengths, cached)
        self.tokens += sum(self.lengths)
        self.cached_tokens += cached * sum(self.lengths)
        self.computed_tokens += self.computed(self.lengths, embedder.packed)
        pl_module.log_dict(self.averages(), on_step=True, on_epoch=False)

    def cached_share(self, embedder) -> float:
        """Share of this step's texts whose frozen-layer outputs came from the prefix cache."""
        if self.cache_counts is None or embedder.prefix_cache is None:
            return 0.0
        hits = embedder.prefix_cache.hits - self.cache_counts[0]
        misses = embedder.prefix_cache.misses - self.cache_counts[1]
        return hits / (hits + misses) if hits + misses else 0.0

    @staticmethod
    def computed(lengths: list[int], packed: bool) -> int:
        """Tokens the linear layers ran on: the real ones when packed, else each length group's rows x width."""
        if packed:
            return sum(lengths)
        return sum(len(group) * max(lengths[i] for i in group) for group in plan_length_groups(lengths))

    def averages(self) -> dict[str, float]:
        """Real tokens/s, model TFLOP/s, MFU and the share of computed tokens that were padding, over the run."""
        seconds = max(self.seconds, 1e-9)
        achieved = self.flops / seconds
        return {
            "throughput/tokens_per_s": self.tokens / seconds,
            "throughput/tflops": achieved / 1e12,
            "throughput/mfu": achieved / self.peak if self.peak else 0.0,
            "throughput/padding": 1 - self.tokens / max(self.computed_tokens, 1),
            "throughput/peak_tflops": self.peak / 1e12,
            "throughput/cached_share": self.cached_tokens / max(self.tokens, 1),
        }
