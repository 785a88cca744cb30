"""Time a run's training steps (or its encoding) with the checkout on PYTHONPATH: embedexp's own `train()`.

Run by bench_train.py once per checkout and configuration (today's main in a worktree, this tree with each speed
change switched on in turn), so every version trains through its own code path; writes a JSON file with the wall
time and the texts of every step (the caller counts tokens and FLOPs once, with one tokenizer), and optionally a
`torch.profiler` table of a few steps. Uses only what every embedexp version since the layered package has.

    PYTHONPATH=<checkout>/src python time_steps.py --out steps.json --steps 24 -- experiment=recipe_cpu seed=1
    PYTHONPATH=<checkout>/src python time_steps.py --out encode.json --encode 1000 -- experiment=recipe_cpu
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time

import lightning as L
import torch


class StepRecorder(L.Callback):
    """Wall time and texts of every training step; a profiler table of steps `profile_from`..`profile_to`."""

    instance: StepRecorder | None = None

    def __init__(self, profile_from: int = -1, profile_to: int = -1) -> None:
        """Steps to profile (none by default)."""
        self.seconds: list[float] = []
        self.texts: list[list[str]] = []
        self.profile_from, self.profile_to, self.table = profile_from, profile_to, ""
        StepRecorder.instance = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Start the clock (and the profiler)."""
        if batch_idx == self.profile_from:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
        self.texts.append(list(batch["text"]) + list(batch["text_pos"]))
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Stop the clock (and the profiler)."""
        self.seconds.append(time.perf_counter() - self.start)
        if batch_idx == self.profile_to:
            self.profiler.__exit__(None, None, None)
            self.table = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def compose(overrides: list[str], output_dir: str):
    """The train config with `overrides`, writing into `output_dir`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from embedexp.core.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg


def time_training(overrides: list[str], steps: int, profile: tuple[int, int]) -> dict:
    """Train `steps` steps through the checkout's `train()` and record each one."""
    from embedexp.cli.train import train

    overrides = [
        *overrides,
        f"trainer.max_steps={steps}",
        "callbacks.clustering_eval=null",
        "logger=csv",  # the LR monitor needs a logger; CSV costs nothing measurable
        "+callbacks.step_recorder._target_=__main__.StepRecorder",
        f"+callbacks.step_recorder.profile_from={profile[0]}",
        f"+callbacks.step_recorder.profile_to={profile[1]}",
    ]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        train(compose(overrides, folder))
        total = time.perf_counter() - start
    recorder = StepRecorder.instance
    return {"seconds": recorder.seconds, "texts": recorder.texts, "profile": recorder.table, "total_s": total}


def time_encoding(overrides: list[str], n_texts: int) -> dict:
    """Encode the first `n_texts` long Debian descriptions of the evaluation split as the run's evaluation does."""
    from embedexp.core.hardware import autocast_for, configure_threads, resolve_config_precisions
    from embedexp.data.debian import corpus_texts, load_corpus
    from embedexp.model.build import build_embedder

    configure_threads("auto")
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose(overrides, folder)
    precision = resolve_config_precisions(cfg)
    kwargs = {"precisions": precision} if "precisions" in inspect.signature(build_embedder).parameters else {}
    embedder = build_embedder(cfg, trainable=False, new_lora=False, **kwargs)
    texts = [r["long"] for r in corpus_texts(load_corpus(cfg.paths.cache_dir), "eval", "long")][:n_texts]
    with autocast_for(precision["eval"], torch.device("cpu")):
        embedder.encode(texts[:64], batch_size=cfg.eval.batch_size)  # warm-up (and torch.compile, if on)
        start = time.perf_counter()
        embedder.encode(texts, batch_size=cfg.eval.batch_size)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "texts": texts}


def main() -> None:
    """Parse arguments, time, write the JSON file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--encode", type=int, default=0, help="time encoding this many texts instead of training")
    parser.add_argument("--profile", type=int, nargs=2, default=(-1, -1), metavar=("FROM", "TO"))
    parser.add_argument("--no-length-groups", action="store_true", help="padded batches in one piece (this tree)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.no_length_groups:  # the state before length groups existed: one padded forward pass per step
        import embedexp.model.embedder as embedder_module

        embedder_module.plan_length_groups = lambda lengths, *_, **__: [list(range(len(lengths)))]
    if args.encode:
        result = time_encoding(args.overrides, args.encode)
    else:
        result = time_training(args.overrides, args.steps, tuple(args.profile))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
