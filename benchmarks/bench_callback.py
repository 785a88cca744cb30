"""Cost of the epoch-end clustering evaluation relative to an epoch of the default run (SmolLM2, offline tasks).

Measured: one training step (median, embedexp defaults) × the default run's steps per epoch; a full evaluation
without caches (the baseline); the first evaluation with the frozen-prefix cache (fills it); a later evaluation
after the LoRA weights changed (runs only the 8 LoRA layers), each in fp32 and in bf16; a zero-shot evaluation
read from the score cache.

    python benchmarks/bench_callback.py                                   # the default run, 300 texts per task
    python benchmarks/bench_callback.py --overrides experiment=recipe_cpu --n-docs 300 1000 --precisions bf16

`--overrides` compose another run's config (its pairs time the step, its steps per epoch make the epoch);
`--n-docs` sets every task's size, one measurement per value (the callback-fidelity study's candidate sizes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_train import run_steps
from common import CACHE_DIR, auto_label, command_line, header, precision_name
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from embedexp.core.config import CONFIG_DIR, PROJECT_ROOT
from embedexp.core.results import write_result_table
from embedexp.evaluation.clustering import evaluate_clustering
from embedexp.evaluation.score_cache import ZeroShotScoreCache, configuration_key
from embedexp.evaluation.sizes import prefix_task
from embedexp.evaluation.tasks import build_tasks
from embedexp.model.build import build_embedder

RESULT = Path(__file__).resolve().parent / "results" / "callback.json"


def timed(fn):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def evaluation_costs(embedder, model, tasks, batch_size: int, precision: str) -> dict[str, float]:
    """Seconds of a full evaluation, the first with the frozen-prefix cache, and a later one (LoRA layers only)."""
    reset_to_base(embedder, model)

    def evaluate():
        return evaluate_clustering(embedder, tasks, batch_size=batch_size, precision=precision)

    full, scores = timed(evaluate)
    cache = embedder.enable_prefix_cache()
    first, _ = timed(evaluate)
    with torch.no_grad():  # what training does between evaluations: the LoRA weights move
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    tail, _ = timed(evaluate)
    size = cache.bytes / 2**20
    print(f"prefix cache ({precision}): {size:.0f} MB, split at layer {cache.split}, verified={cache.verified}")
    return {"full": full, "first": first, "tail": tail, "scores": scores}


def reset_to_base(embedder, model) -> None:
    """The base model again: LoRA's B matrices zero (its update vanishes), no frozen-prefix cache."""
    embedder.prefix_cache = None
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.zero_()


def main() -> None:
    """Print and write evaluation costs and their share of an epoch, per precision and task size."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides of the train config")
    parser.add_argument("--n-docs", nargs="*", type=int, default=[], help="texts per task (default: the config's)")
    parser.add_argument("--precisions", nargs="*", default=["32", "bf16"], choices=["32", "bf16"])
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.cache_dir={CACHE_DIR}", *args.overrides])
    steps_per_epoch = (cfg.data.get("total_pairs") or cfg.data.source.max_pairs) // cfg.data.batch_size
    header(
        f"clustering callback vs one epoch of {' '.join(args.overrides) or 'the default run'} "
        f"({steps_per_epoch} steps of {cfg.data.batch_size} pairs)"
    )
    auto = auto_label()
    sized = tasks_by_size(cfg.tasks, args.n_docs)
    baseline = None  # (tasks, scores, epoch seconds) of the base model under `auto`, for the score-cache lookup
    table = []  # [precision, evaluation, tasks x texts, seconds, share of an epoch]
    print(f"\n{'precision / evaluation':72s} {'seconds':>8s} {'of epoch':>9s}")
    for precision in args.precisions:
        trainer_precision = "bf16-mixed" if precision == "bf16" else "32-true"
        overrides = [*args.overrides, f"trainer.precision={trainer_precision}", f"eval.precision={precision}"]
        with tempfile.TemporaryDirectory() as folder:
            timed_steps = run_steps(PROJECT_ROOT / "src", overrides, [], Path(folder) / "steps.json", 8, False)
        step = statistics.median(timed_steps["seconds"][2:])
        embedder = build_embedder(cfg, precisions={"train": trainer_precision, "eval": precision})
        model = embedder.model
        epoch = step * steps_per_epoch
        label = precision_name(precision) + (" (auto here)" if precision == auto else "")
        print(f"{label + f': training step {step:.2f} s -> epoch':72s} {epoch:8.1f} {1:8.1%}")
        table.append([label, f"one epoch ({steps_per_epoch} steps of {step:.2f} s)", "", round(epoch, 1), 1.0])
        for n_docs, tasks in sized.items():
            size = f"{len(tasks)} tasks x {n_docs} texts" if n_docs else f"{len(tasks)} tasks as configured"
            costs = evaluation_costs(embedder, model, tasks, cfg.eval.batch_size, precision)
            rows = [
                ("full evaluation, no caches (baseline)", costs["full"]),
                ("first evaluation, filling the frozen-prefix cache", costs["first"]),
                ("later evaluation, LoRA layers only (every epoch)", costs["tail"]),
            ]
            for name, seconds in rows:
                print(f"{f'{label}, {size}: {name}':72s} {seconds:8.1f} {seconds / epoch:8.1%}")
                table.append([label, name, size, round(seconds, 1), round(seconds / epoch, 3)])
            print(f"{label}, {size}: per-epoch evaluation speed-up vs baseline {costs['full'] / costs['tail']:.2f}x")
            if precision == auto:
                baseline = tasks, costs["scores"], epoch
    if baseline is not None:
        tasks, scores, auto_epoch = baseline
        scores_cache = ZeroShotScoreCache(tempfile.mkdtemp())
        reset_to_base(embedder, model)
        scores_cache.put(configuration_key(embedder, tasks, auto), scores)
        hit, _ = timed(lambda: scores_cache.get(configuration_key(embedder, tasks, auto)))
        print(f"zero-shot evaluation from the score cache: {hit:.2f} s")
        table.append(
            [
                precision_name(auto),
                "zero-shot evaluation read from the score cache",
                "",
                round(hit, 2),
                round(hit / auto_epoch, 4),
            ]
        )
    write_result_table(
        RESULT,
        f"clustering callback vs one epoch of {' '.join(args.overrides) or 'the default run'} "
        f"({steps_per_epoch} steps of {cfg.data.batch_size} pairs)",
        ["precision", "evaluation", "tasks x texts", "seconds", "share of an epoch"],
        table,
        command_line("bench_callback.py"),
        precision={"eval": "+".join(precision_name(p) for p in args.precisions)},
        notes="One process, one measurement per row; the epoch is the median training step x the run's steps.",
    )
    print(f"written to {RESULT}")


def tasks_by_size(tasks_cfg, sizes: list[int]) -> dict:
    """n_docs -> the configured tasks at that size (None -> as configured): drawn once at the largest size, the
    smaller ones its first n_docs texts per task (`prefix_task`: what a draw of n_docs gives)."""
    if not sizes:
        return {None: build_tasks(tasks_cfg)}
    largest = OmegaConf.create(OmegaConf.to_container(tasks_cfg, resolve=True))
    for name in largest:
        largest[name].n_docs = max(sizes)
    drawn = build_tasks(largest)
    return {n: [prefix_task(task, n) for task in drawn] for n in sorted(sizes)}


if __name__ == "__main__":
    main()
