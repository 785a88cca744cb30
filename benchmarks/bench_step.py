"""Seconds per training step of `experiment=recipe_cpu` with each step lever of issue #27 switched on alone and all
together, in one process, against the default (every lever off).

Every variant gets its embedder and LightningModule built once (the recipe's model, pairs and `precision: auto`);
each round then fits every variant for `--skip` warm-up steps plus `--steps` timed ones (a fresh Trainer: the same
seed and so the same batches, a fresh optimizer), the variants' order rotated from round to round, so drift of a
shared machine hits every variant alike. The prefix store and the evaluation callback are off: every step runs all
layers, as in the first run of a sweep. Writes `benchmarks/results/step_levers.json` (median s/step over all rounds'
timed steps, ratio to the default) for docs/performance.md.

    python benchmarks/bench_step.py [--steps 12] [--skip 3] [--rounds 3]
    python benchmarks/bench_step.py --quick --results /tmp/out   # tiny model, 3 steps: checks the script only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
from common import RECIPE_WORKLOAD, header
from hydra.utils import instantiate
from time_steps import compose

from embedexp.cli.train import build_module
from embedexp.core.results import write_result_table
from embedexp.core.run_setup import setup_run
from embedexp.model.build import build_embedder

HERE = Path(__file__).resolve().parent
RECIPE = [
    *RECIPE_WORKLOAD,
    "seed=1",
    "prefix_store=null",
    "callbacks.clustering_eval=null",
    "optimizer.fused=false",
]  # every lever off, whatever the config defaults to
QUICK = ["model=tiny", "model.compile=false", "data.source.max_pairs=64", "data.batch_size=8"]
# (label, overrides): every lever alone; the last row switches on those named by --together
LEVERS = {
    "one SDPA call per packed batch (model.attention_groups=single)": ["model.attention_groups=single"],
    "fused AdamW (optimizer.fused=true)": ["optimizer.fused=true"],
    "Dynamo guards skipped after warm-up (model.compile_guards=skip_after_warmup)": [
        "model.compile_guards=skip_after_warmup"
    ],
}
DEFAULT = "default (every lever off = experiment=recipe_cpu)"


class StepClock(L.Callback):
    """Wall time of every training step of one fit."""

    def __init__(self) -> None:
        """No steps yet."""
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Start the clock."""
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Stop the clock."""
        self.seconds.append(time.perf_counter() - self.start)


class Variant:
    """One configuration: its run setup, embedder, module and data, built once and fitted every round."""

    def __init__(self, overrides: list[str], folder: str) -> None:
        """Compose and build the variant (its own output folder under `folder`)."""
        self.run = setup_run(compose(overrides, folder))
        embedder = build_embedder(self.run.cfg, precisions=self.run.precisions)
        self.module = build_module(self.run.cfg, embedder)
        self.datamodule = instantiate(self.run.cfg.data)
        self.seconds: list[float] = []

    def fit(self, steps: int, skip: int) -> None:
        """Fit `skip + steps` steps with a fresh Trainer; keep the timed steps' seconds."""
        clock = StepClock()
        L.seed_everything(int(self.run.cfg.seed), workers=True)  # the same batches every round
        trainer = instantiate(
            self.run.cfg.trainer,
            callbacks=[clock],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            max_steps=skip + steps,
            plugins=None,
        )
        trainer.fit(self.module, datamodule=self.datamodule)
        self.seconds += clock.seconds[skip:]


def main() -> None:
    """Build the variants, time them round by round, print and write the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant and round")
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps of each fit left out")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--together", nargs="*", default=None, help="labels' config keys for the last row (all)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 3 steps, 1 round: a check of the script")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.skip, args.rounds = 3, 1, 1
    base = RECIPE + (QUICK if args.quick else [])
    levers = dict(LEVERS)
    chosen = [
        o for overrides in levers.values() for o in overrides if not args.together or any(k in o for k in args.together)
    ]
    levers["all levers together: " + " ".join(chosen)] = chosen
    header(f"step levers: experiment=recipe_cpu, {args.rounds} rounds x ({args.skip} + {args.steps}) steps")
    with tempfile.TemporaryDirectory() as folder:
        variants = {DEFAULT: Variant(base, f"{folder}/default")}
        for index, (label, overrides) in enumerate(levers.items()):
            variants[label] = Variant(base + overrides, f"{folder}/{index}")
        labels = list(variants)
        for round_index in range(args.rounds):
            order = labels[round_index % len(labels) :] + labels[: round_index % len(labels)]
            for label in order:
                print(f"[round {round_index + 1}/{args.rounds}] {label}", flush=True)
                variants[label].fit(args.steps, args.skip)
    precision = variants[DEFAULT].run.precisions["train"]
    default = statistics.median(variants[DEFAULT].seconds)
    rows = []
    for label, variant in variants.items():
        median = statistics.median(variant.seconds)
        rows.append([label, round(median, 4), round(median / default, 3)])
        print(f"{label:90s} {median:7.3f} s/step  {median / default:6.3f}x")
    command = "python benchmarks/bench_step.py" + (
        " --quick" if args.quick else f" --steps {args.steps} --skip {args.skip} --rounds {args.rounds}"
    )
    write_result_table(
        Path(args.results) / "step_levers.json",
        f"experiment=recipe_cpu seconds per training step, each lever of issue #27 alone and all together (median "
        f"of {args.rounds} interleaved rounds x {args.steps} steps after {args.skip} warm-up steps, all layers run: "
        "no prefix store)",
        ["change", "s/step", "ratio vs default"],
        rows,
        command,
        {"train": precision},
        notes="Ratio below 1: faster than the default. One process, one model per variant, the same batches.",
    )


if __name__ == "__main__":
    main()
