"""The sweep report: `python -m embedexp report <multirun folder> [more folders] [overrides]` (Hydra, conf/report.yaml).

Reads every job of the multirun(s) (`metrics.json`, `run_status.json`, `.hydra/overrides.yaml`; a finished W&B
offline run where `metrics.json` is missing), groups jobs by their overrides minus the seed and by the task set they
scored (configurations are compared only within one task set), lists unfinished jobs with reason and last step, and
writes into `out_dir` (default
`<first folder>/report`):

| file | content |
|---|---|
| `report.md` | configurations × tasks, mean ± 95 % CI over seeds; best configuration per metric; unfinished jobs |
| `report.csv` | the same, one row per configuration and stage: `<metric> mean`, `<metric> ci95`, `<metric> std` |
| `best.csv` | best configuration per metric, its runner-up and whether their intervals are disjoint |
| `runs.csv` | every job's raw scores (config, stage, seed, metric, value, job folder) |
| `report.png` | one panel per metric, a bar per configuration and stage with CI error bars |

`baselines=[<eval folder>, ...]` adds other models' `embedexp eval` results (e.g. `make baseline`) as rows of stage
`baseline`, refused when they scored other tasks than the runs (`embedexp.analysis.report.baselines`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from embedexp.analysis.report.baselines import baseline_rows, results_file
from embedexp.analysis.report.collect import (
    DEFAULT_EXCLUDE,
    collect_runs,
    config_keys,
    runs_frame,
    sweep_shapes,
    task_sets,
)
from embedexp.analysis.report.plots import plot_report
from embedexp.analysis.report.stats import best_per_metric, summarize
from embedexp.analysis.report.tables import best_markdown, markdown_table, wide_table
from embedexp.core.atomic import atomic_file, atomic_write_text
from embedexp.core.errors import ConfigError
from embedexp.evaluation.clustering import describe_tasks

log = logging.getLogger("embedexp.analysis.report")


def build_report(
    sweep_dirs: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    exclude_keys: Sequence[str] = DEFAULT_EXCLUDE,
    seed_key: str = "seed",
    confidence: float = 0.95,
    stages: Sequence[str] = ("fine_tuned", "zero_shot"),
    title: str | None = None,
    plot: bool = True,
    read_wandb: bool = True,
    baselines: Sequence[str | Path] = (),
) -> dict[str, Path]:
    """Write the report files for the jobs under `sweep_dirs`; returns their paths by name."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    folders = [Path(d) for d in sweep_dirs]
    if not folders and not baselines:
        raise ConfigError("report: sweep_dir=[] needs baselines=[...] (a table of eval folders only)")
    if len(folders) > 1 and not out_dir:  # never into one of the sweeps (the oldest, say) without being asked
        raise ConfigError("report: several sweep folders need out_dir=<folder for the report>")
    out = Path(out_dir) if out_dir else (folders[0] if folders else results_file(baselines[0]).parent) / "report"
    records = collect_runs(folders, seed_key, read_wandb)
    runs, constant = runs_frame(records, exclude_keys, seed_key) if records else (pd.DataFrame(), {})
    if folders:
        runs = runs[runs["stage"].isin(list(stages))]
        if runs.empty:
            raise ConfigError(
                f"report: no finished job with scores of stages {list(stages)} under {', '.join(map(str, folders))}"
            )
    keys, _ = config_keys(records, exclude_keys)
    extra, notes = baseline_rows(baselines, list(task_sets(records)))
    if not extra.empty:
        runs = pd.concat([runs, extra], ignore_index=True)
    summary = summarize(runs, confidence)
    best = best_per_metric(summary)
    unfinished = [r for r in records if not r.finished]
    paths = {
        "runs": atomic_write_text(out / "runs.csv", runs.to_csv(index=False)),
        "csv": atomic_write_text(out / "report.csv", wide_table(summary, runs, keys).to_csv(index=False)),
        "best": atomic_write_text(out / "best.csv", best.to_csv(index=False)),
    }
    heading = title or (folders[0].name if folders else "baselines") + (f" ({_shared(constant)})" if constant else "")
    if plot:
        figure = plot_report(summary, heading, confidence)
        with atomic_file(out / "report.png") as staging:
            figure.savefig(staging, format="png", dpi=120)
        paths["png"] = out / "report.png"
    shapes = sweep_shapes(records, exclude_keys, seed_key)
    markdown = report_markdown(
        folders, constant, summary, best, records, unfinished, confidence, heading, notes, shapes
    )
    paths["md"] = atomic_write_text(out / "report.md", markdown)
    return paths


def _shared(constant: dict[str, str]) -> str:
    """`k=v, k=v` of the overrides every job shares."""
    return ", ".join(f"{k}={v}" for k, v in constant.items())


def report_markdown(
    folders, constant, summary, best, records, unfinished, confidence, heading, notes=(), shapes=None
) -> str:
    """The Markdown report: sources, the table, the best configuration per metric, notes."""
    finished = sum(r.finished for r in records)
    from_wandb = sum(r.finished and r.source != "metrics.json" for r in records)
    level = f"{confidence:.0%}"
    lines = [
        f"# Sweep report: {heading}",
        "",
        "Sources: " + ", ".join(f"`{f}`" for f in folders),
        f"Jobs: {finished} finished ({from_wandb} read from W&B offline runs), {len(unfinished)} unfinished "
        "(failed, interrupted, killed or still running: never counted).",
        "Shared overrides: " + (f"`{_shared(constant)}`" if constant else "none"),
        "",
        f"## V-measure, mean ± {level} CI over seeds",
        "",
        f"Each cell: mean over the configuration's seeds ± the half-width of the {level} Student-t interval "
        "(t · s / √n, s the sample standard deviation); `(n=1)`: one seed, no interval. Stage `fine_tuned` is the "
        "score after training, `zero_shot` the same run's score before its first step (the base model with this "
        "pooling and prompt).",
        "",
        markdown_table(summary),
        "",
        "## Best configuration per metric",
        "",
        best_markdown(best),
        "",
        "`CIs disjoint: no` means the seeds do not separate the best configuration from the runner-up.",
    ]
    degenerate = summary[(summary["n"] >= 2) & (summary["ci"] == 0)]
    if not degenerate.empty:
        lines += [
            "",
            f"{len(degenerate)} of {len(summary)} cells have a zero-width interval: every seed gave the same score "
            "(k-means on few texts is discrete, and a short fine-tuning may not move any assignment). That is no "
            "evidence of precision; more seeds, texts or training are.",
        ]
    if (summary["stage"] == "baseline").any():
        lines += [
            "",
            "Stage `baseline`: another model's `embedexp eval` on the same tasks (one run, no seeds, no interval).",
            *[f"Note: {note}." for note in notes],
        ]
    duplicated = _duplicate_seeds(summary)
    if duplicated:
        lines += ["", "Warning: some configurations repeat a seed (not independent samples): " + ", ".join(duplicated)]
    lines += ["", *task_set_lines(records), *shape_lines(shapes or {})]
    if unfinished:
        lines += ["", "## Unfinished jobs (not in any table)", ""]
        lines += [
            f"- `{r.job_dir}`: {r.status}" + (f" ({r.reason})" if r.reason else "") + f", last step {r.last_step}"
            for r in unfinished
        ]
    return "\n".join(lines) + "\n"


def shape_lines(shapes: dict[str, list[str]]) -> list[str]:
    """When the sweeps set different override keys: a section saying their jobs were not pooled, and each shape."""
    if len({tuple(keys) for keys in shapes.values()}) <= 1:
        return []
    lines = [
        "",
        f"## Sweeps of different shapes ({len(shapes)})",
        "",
        "These sweeps set different override keys, so their jobs are not pooled: each configuration is labelled "
        "with its sweep folder. Report one shape at a time, or repeat a sweep with the same keys to add seeds.",
        "",
    ]
    return lines + [f"- `{sweep}`: " + (", ".join(keys) or "no overrides") for sweep, keys in shapes.items()]


def task_set_lines(records) -> list[str]:
    """The task set(s) scored; when they differ, a warning that `clustering_mean` is compared only within one."""
    sets = task_sets(records)
    if len(sets) == 1:
        ((set_id, tasks),) = sets.items()
        return [f"Task set {set_id}, scored by every finished job: " + (describe_tasks({"tasks": tasks}) or "?")]
    lines = [
        f"## Task sets differ ({len(sets)})",
        "",
        "These jobs scored different clustering tasks (or the same tasks on different texts): each configuration is "
        "labelled with its task set, and `clustering_mean` and the best configuration are compared only within one "
        "task set.",
        "",
    ]
    for set_id, tasks in sets.items():
        lines.append(f"- `{set_id}`: " + (describe_tasks({"tasks": tasks}) or "tasks not recorded (older run)"))
    return lines


def _duplicate_seeds(summary) -> list[str]:
    """Configurations whose seed list has repeats (e.g. the same sweep pooled twice)."""
    repeated = []
    for (config, stage), group in summary.groupby(["config", "stage"], sort=False):
        seeds = str(group.iloc[0]["seeds"]).split()
        if len(seeds) != len(set(seeds)):
            repeated.append(f"{config} ({stage})")
    return repeated
