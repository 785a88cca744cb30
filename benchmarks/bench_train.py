"""Training throughput (pairs/s): embedexp's Lightning training vs a plain HF-Trainer-style loop, same model and LoRA.

The plain loop does what a typical script does: random batches padded to their longest text, anchors and
positives in two forward passes, float32. embedexp trains through Lightning with its defaults: length-grouped
batches, one forward pass for both sides; it is timed in fp32 and under bf16 autocast (`precision: auto` picks the
faster one here). Both use the default LoRA (r=8 on q/k/v/o of the last 8 layers), InfoNCE (temperature 0.05),
AdamW (lr 2e-4) and gradient clipping, on the same Debian noise pairs.

    python benchmarks/bench_train.py [--steps 6] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import lightning as L
import torch
from common import CACHE_DIR, EOL, auto_label, header, smollm2

from embedexp.core.hardware import resolve_precision
from embedexp.data.datamodule import PairDataModule
from embedexp.data.pairs import DebianPairs
from embedexp.model.embedder import Embedder
from embedexp.model.lora import apply_lora
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate
from embedexp.training.loss import InfoNCELoss
from embedexp.training.module import EmbeddingModule

LORA = dict(r=8, alpha=16, dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], last_n_layers=8)


class StepTimer(L.Callback):
    """Wall time of each training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter() - self.start)


def plain_loop_step_times(pairs, steps: int, batch_size: int, max_length: int) -> list[float]:
    """A plain training loop; returns the wall time of each step."""
    backbone = smollm2()
    model = apply_lora(backbone.model, **LORA)
    tokenizer, loss_fn = backbone.tokenizer, InfoNCELoss(0.05)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)

    def embed(texts: list[str]) -> torch.Tensor:
        prompted = [EOL.replace("{text}", t) for t in texts]
        batch = tokenizer(prompted, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    times = []
    for step in range(steps):
        chosen = [pairs[i] for i in order[step * batch_size : (step + 1) * batch_size]]
        start = time.perf_counter()
        loss = loss_fn(embed([a for a, _ in chosen]), embed([b for _, b in chosen]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return times


def embedexp_step_times(source, steps: int, batch_size: int, max_length: int, precision: str = "auto") -> list[float]:
    """embedexp's training (Lightning, default settings, `precision` as trainer.precision); wall time of each step."""
    backbone = smollm2()
    model = apply_lora(backbone.model, **LORA)
    embedder = Embedder(model, backbone.tokenizer, MeanPooling(), PromptTemplate("eol", EOL), max_length)
    module = EmbeddingModule(embedder, InfoNCELoss(0.05), lambda p: torch.optim.AdamW(p, lr=2e-4))
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        precision=resolve_precision(precision, "trainer.precision", "trainer"),
        max_steps=steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=PairDataModule(source, batch_size=batch_size, seed=0))
    return timer.times


def main() -> None:
    """Time both trainings and print pairs/s and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6, help="measured steps (after 1 warm-up step)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    header(f"training throughput, SmolLM2-135M + LoRA, batch {args.batch_size} pairs of Debian descriptions")
    source = DebianPairs(
        text_field="short", max_pairs=(args.steps + 2) * args.batch_size * 2, seed=0, cache_dir=CACHE_DIR
    )
    pairs = source.load()
    plain = plain_loop_step_times(pairs, args.steps + 1, args.batch_size, args.max_length)[1:]
    ours = {
        precision: embedexp_step_times(source, args.steps + 1, args.batch_size, args.max_length, precision)[1:]
        for precision in ("32", "bf16")
    }
    plain_rate = args.batch_size / statistics.median(plain)
    print(f"\n{'trainer':36s} {'s/step':>7s} {'pairs/s':>8s} {'ratio':>6s}")
    print(f"{'plain loop (fp32, 2 passes, random)':36s} {statistics.median(plain):7.2f} {plain_rate:8.2f} {1:5.2f}x")
    for precision, times in ours.items():
        rate = args.batch_size / statistics.median(times)
        label = f"embedexp ({'fp32' if precision == '32' else 'bf16-mixed'})"
        print(f"{label:36s} {statistics.median(times):7.2f} {rate:8.2f} {rate / plain_rate:5.2f}x")
    auto = auto_label()
    auto_rate = args.batch_size / statistics.median(ours[auto])
    print(
        f"default (precision auto = {'bf16-mixed' if auto == 'bf16' else 'fp32'}): {auto_rate / plain_rate:.2f}x the "
        f"plain loop (median over {args.steps} steps after 1 warm-up; goal >= 1.5x)"
    )


if __name__ == "__main__":
    main()
