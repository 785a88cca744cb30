"""How encode time and peak memory grow with text length (64…2048 tokens), batch size and threads.

python benchmarks/bench_scaling.py [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import PeakRSS, auto_label, command_line, header, median_seconds, precision_name, smollm2

from embedexp.core.hardware import autocast_for
from embedexp.core.results import write_result_table
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate

RESULT = Path(__file__).resolve().parent / "results" / "scaling.json"
WORDS = "the package provides a library for parsing and writing structured documents in several formats".split()


def text_of(tokenizer, n_tokens: int) -> str:
    """A text of real words with about `n_tokens` tokens."""
    words = (WORDS * (n_tokens // len(WORDS) + 2))[: n_tokens * 2]
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def main() -> None:
    """Print and write seconds, tokens/s and peak RSS growth per (length, batch, threads) setting."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header("encode scaling, SmolLM2-135M, mean pooling, precision auto")
    backbone = smollm2()
    embedder = Embedder(backbone.model, backbone.tokenizer, MeanPooling(), PromptTemplate("none"), 4096)
    threads = torch.get_num_threads()
    settings = [(length, 4, threads) for length in (64, 128, 256, 512, 1024, 2048)]
    settings += [(128, b, threads) for b in (1, 16, 64)] + [(128, 16, n) for n in range(1, threads)]
    print(f"\n{'tokens':>6s} {'batch':>5s} {'threads':>7s} {'seconds':>8s} {'tokens/s':>9s} {'peak MB':>8s}")
    rows = []
    for length, batch, n_threads in settings:
        torch.set_num_threads(n_threads)
        texts = [text_of(backbone.tokenizer, length)] * batch

        def run(texts=texts, batch=batch):
            with autocast_for("auto", embedder.device):
                embedder.encode(texts, batch_size=batch)

        with PeakRSS() as memory:
            seconds = median_seconds(run, repeats=args.repeats)
        rate = length * batch / seconds
        print(f"{length:6d} {batch:5d} {n_threads:7d} {seconds:8.3f} {rate:9.0f} {memory.megabytes:8.0f}", flush=True)
        rows.append([length, batch, n_threads, round(seconds, 3), round(rate), round(memory.megabytes)])
    torch.set_num_threads(threads)
    write_result_table(
        RESULT,
        "encode scaling with text length, batch size and threads (SmolLM2-135M, mean pooling, no prompt)",
        ["tokens per text", "batch", "threads", "seconds (median)", "tokens/s", "peak RSS growth MB"],
        rows,
        command_line("bench_scaling.py"),
        precision={"eval": precision_name(auto_label())},
        notes=f"Median of {args.repeats} timed calls after one warm-up per row; one process, rows in order.",
    )
    print(f"written to {RESULT}")


if __name__ == "__main__":
    main()
