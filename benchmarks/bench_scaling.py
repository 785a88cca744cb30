"""How encode time and peak memory grow with text length (64…2048 tokens) and with batch size.

python benchmarks/bench_scaling.py [--repeats 3]
"""

from __future__ import annotations

import argparse

from common import PeakRSS, header, median_seconds, smollm2

from embedexp.core.hardware import autocast_for
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate

WORDS = "the package provides a library for parsing and writing structured documents in several formats".split()


def text_of(tokenizer, n_tokens: int) -> str:
    """A text of real words with about `n_tokens` tokens."""
    words = (WORDS * (n_tokens // len(WORDS) + 2))[: n_tokens * 2]
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def main() -> None:
    """Print seconds, tokens/s and peak RSS growth per (length, batch) setting."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header("encode scaling, SmolLM2-135M, mean pooling, precision auto")
    backbone = smollm2()
    embedder = Embedder(backbone.model, backbone.tokenizer, MeanPooling(), PromptTemplate("none"), 4096)
    settings = [(length, 4) for length in (64, 128, 256, 512, 1024, 2048)] + [(128, b) for b in (1, 16, 64)]
    print(f"\n{'tokens':>6s} {'batch':>5s} {'seconds':>8s} {'tokens/s':>9s} {'peak MB':>8s}")
    for length, batch in settings:
        texts = [text_of(backbone.tokenizer, length)] * batch

        def run(texts=texts, batch=batch):
            with autocast_for("auto", embedder.device):
                embedder.encode(texts, batch_size=batch)

        with PeakRSS() as memory:
            seconds = median_seconds(run, repeats=args.repeats)
        print(
            f"{length:6d} {batch:5d} {seconds:8.3f} {length * batch / seconds:9.0f} {memory.megabytes:8.0f}", flush=True
        )


if __name__ == "__main__":
    main()
