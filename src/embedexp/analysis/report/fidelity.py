"""Callback fidelity: `python -m embedexp fidelity <multirun folder> [more] [overrides]` (conf/fidelity.yaml).

For every finished job of the multirun(s) it (1) scores the job's final adapter on `tasks` (default
`tasks=offline_full`) at each of `sizes` texts per task, encoding every text once (`embedexp.evaluation.sizes`;
cached per job in `<job>/fidelity_scores.csv`, skipped with `score=false`), and (2) compares, across jobs, each size
and the callback's own scores (`metrics.json` `val/*`, n_docs `callback`) and any `eval_results.csv` under the job
(`python -m embedexp eval adapter_path=<job>/adapter tasks=offline_full hydra.run.dir=<job>/full_eval`, n_docs
`eval`) with the reference (`reference`: the largest size, or `eval`): Spearman's rho per task and for
`clustering_mean`, with a bootstrap interval over jobs. Writes into `out_dir` (default `<first folder>/fidelity`):
`scores.csv` (every job × size × metric), `fidelity.csv` (metric, n_docs, n_runs, spearman, ci_low, ci_high, median
seconds per job), `fidelity.md` and `fidelity.png` (n_docs → rho with its interval, and → cost).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from embedexp.analysis.report.collect import collect_runs
from embedexp.analysis.report.fidelity_stats import fidelity_table, smallest_faithful_size
from embedexp.core.atomic import atomic_file, atomic_write_text
from embedexp.core.errors import ConfigError
from embedexp.evaluation.clustering import read_results_row

log = logging.getLogger("embedexp.analysis.report.fidelity")
JOB_SCORES = "fidelity_scores.csv"


@dataclass
class FidelityBuild:
    """What `build_fidelity` wrote and the facts a result file names: reference size and the jobs' precisions."""

    paths: dict[str, Path]
    reference: str
    precision: str  # the precisions the jobs were scored in, e.g. `bf16`


def job_precision(run_cfg: DictConfig, cfg: DictConfig) -> str:
    """The autocast precision a job is scored in (32 or bf16): `precision`, else the job's callback precision."""
    from embedexp.core.hardware import resolve_precision

    precision = cfg.get("precision") or run_cfg.get("callbacks", {}).get("clustering_eval", {}).get("precision", "auto")
    return resolve_precision(precision, "fidelity.precision")


def score_job(job_dir: Path, cfg: DictConfig) -> pd.DataFrame:
    """The job's adapter scored at `cfg.sizes` on `cfg.tasks` with the job's own model, pooling and prompt."""
    from omegaconf import OmegaConf

    from embedexp.evaluation.sizes import score_at_sizes
    from embedexp.evaluation.tasks import build_tasks
    from embedexp.export.resolve import open_model
    from embedexp.model.prefix_store import open_prefix_store

    adapter = job_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"fidelity: {job_dir} has no adapter/ (a finished embedexp.cli.train job saves one)")
    opened = open_model(OmegaConf.create({"run_dir": str(job_dir), "paths": cfg.paths}))
    embedder, run_cfg = opened.embedder, opened.run_cfg
    embedder.prefix_store = open_prefix_store(cfg)
    embedder.enable_prefix_cache()  # jobs that share frozen layers and prompt compute those layers' states once
    precision = job_precision(run_cfg, cfg)
    sizes = sorted(int(n) for n in cfg.sizes)
    tasks = build_tasks(cfg.tasks)
    frame = score_at_sizes(embedder, tasks, sizes, cfg.batch_size, str(precision))
    atomic_write_text(job_dir / JOB_SCORES, frame.to_csv(index=False))
    return frame


def job_scores(job_dir: Path, cfg: DictConfig) -> pd.DataFrame:
    """Cached size scores of a job (rescored when the cache misses one of `cfg.sizes`), or scored now."""
    cached = job_dir / JOB_SCORES
    if cached.is_file():
        frame = pd.read_csv(cached)
        if {int(n) for n in cfg.sizes} <= set(frame["n_docs"].astype(int)):
            return frame
    if not cfg.score:
        return pd.DataFrame(columns=["n_docs", "metric", "value", "seconds"])
    log.info("scoring %s at n_docs=%s", job_dir, list(cfg.sizes))
    return score_job(job_dir, cfg)


def eval_results(job_dir: Path) -> pd.DataFrame:
    """Scores of `eval_results.csv` files under the job (full-size `embedexp.cli.eval` runs of its adapter)."""
    rows = []
    for path in sorted(job_dir.rglob("eval_results.csv")):
        _, scores = read_results_row(path)
        rows += [dict(n_docs="eval", metric=metric, value=value, seconds=None) for metric, value in scores.items()]
    return pd.DataFrame(rows, columns=["n_docs", "metric", "value", "seconds"])


def collect_scores(sweep_dirs: Sequence[str | Path], cfg: DictConfig) -> tuple[pd.DataFrame, set[str]]:
    """Long table run, n_docs, metric, value, seconds over every finished job (callback, sizes, eval results), and
    the precisions the jobs are scored in."""
    from omegaconf import OmegaConf

    frames, precisions = [], set()
    for record in collect_runs(sweep_dirs, read_wandb=False):
        if not record.finished or "fine_tuned" not in record.scores:
            continue
        config = record.job_dir / ".hydra" / "config.yaml"
        precisions.add(job_precision(OmegaConf.load(config) if config.is_file() else OmegaConf.create(), cfg))
        run = str(record.job_dir)
        callback = pd.DataFrame(
            [dict(n_docs="callback", metric=m, value=v, seconds=None) for m, v in record.scores["fine_tuned"].items()]
        )
        for frame in (callback, job_scores(record.job_dir, cfg), eval_results(record.job_dir)):
            if not frame.empty:
                frames.append(frame.assign(run=run))
    if not frames:
        raise ConfigError(f"fidelity: no finished job with callback scores under {', '.join(map(str, sweep_dirs))}")
    scores = pd.concat(frames, ignore_index=True)
    scores["n_docs"] = scores["n_docs"].astype(str)
    return scores[["run", "n_docs", "metric", "value", "seconds"]], precisions


def reference_size(scores: pd.DataFrame, reference: str | int | None) -> str:
    """`eval`, a given size, or (None / `largest`) the largest numeric size present."""
    if reference not in (None, "largest"):
        return str(reference)
    numeric = [int(n) for n in scores["n_docs"].unique() if str(n).isdigit()]
    if not numeric:
        raise ConfigError(
            "fidelity: no size scores (score=false and no cached fidelity_scores.csv); set reference=eval"
        )
    return str(max(numeric))


def plot_fidelity(table: pd.DataFrame, title: str):
    """Left: n_docs → Spearman rho with its interval, one line per metric; right: n_docs → seconds per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sized = table[table["n_docs"].map(lambda n: str(n).isdigit())].copy()
    sized["n"] = sized["n_docs"].astype(int)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for metric, group in sized.groupby("metric", sort=True):
        group = group.sort_values("n")
        bold = metric == "clustering_mean"
        below = (group["spearman"] - group["ci_low"]).clip(lower=0).fillna(0)
        above = (group["ci_high"] - group["spearman"]).clip(lower=0).fillna(0)
        style = dict(linewidth=2.5 if bold else 1, alpha=1 if bold else 0.6)
        left.errorbar(group["n"], group["spearman"], yerr=[below, above], marker="o", capsize=3, label=metric, **style)
    left.axhline(0.9, color="gray", linestyle="--", linewidth=1)
    left.set(xscale="log", xlabel="texts per task (n_docs)", ylabel="Spearman rho vs reference", title=title)
    left.legend(fontsize=7)
    cost = sized[sized["metric"] == "clustering_mean"].sort_values("n")
    right.plot(cost["n"], cost["seconds"], marker="o")
    right.set(xscale="log", xlabel="texts per task (n_docs)", ylabel="seconds per evaluation (median over runs)")
    fig.tight_layout()
    return fig


def build_fidelity(sweep_dirs: Sequence[str | Path], cfg: DictConfig) -> FidelityBuild:
    """Score (where needed), correlate and write the fidelity files: their paths by name, reference and precision."""
    folders = [Path(d) for d in sweep_dirs]
    out = Path(cfg.out_dir) if cfg.get("out_dir") else folders[0] / "fidelity"
    scores, precisions = collect_scores(folders, cfg)
    reference = reference_size(scores, cfg.get("reference"))
    table = fidelity_table(scores, reference, cfg.n_bootstrap, cfg.confidence, cfg.seed)
    paths = {
        "scores": atomic_write_text(out / "scores.csv", scores.to_csv(index=False)),
        "csv": atomic_write_text(out / "fidelity.csv", table.to_csv(index=False)),
    }
    best = smallest_faithful_size(table, cfg.min_spearman, cfg.get("max_seconds"))
    lines = [
        f"# Callback fidelity: {folders[0].name}",
        "",
        f"Runs: {scores['run'].nunique()}; reference: n_docs={reference}; Spearman rho across runs with the "
        f"{cfg.confidence:.0%} percentile interval of {cfg.n_bootstrap} bootstrap resamples of the runs; seconds: "
        "median cost of one evaluation at that size (encoding + clustering).",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        f"Smallest n_docs with clustering_mean rho >= {cfg.min_spearman}"
        + (f" and cost <= {cfg.max_seconds} s" if cfg.get("max_seconds") else "")
        + f": {best if best is not None else 'none'}",
    ]
    paths["md"] = atomic_write_text(out / "fidelity.md", "\n".join(lines) + "\n")
    if cfg.plot:
        with atomic_file(out / "fidelity.png") as staging:
            plot_fidelity(table, f"reference n_docs={reference}").savefig(staging, format="png", dpi=120)
        paths["png"] = out / "fidelity.png"
    return FidelityBuild(paths, reference, ", ".join(sorted(precisions)))
