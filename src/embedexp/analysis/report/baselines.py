"""Baseline rows for the report: another model's `python -m embedexp eval` results next to the sweep's runs.

A baseline is an eval output folder (or its `eval_results.csv`), e.g. all-MiniLM-L6-v2 from `make baseline`. Its
scores join the report as stage `baseline` (one run, no seeds, no interval). The eval run records the task set it
scored (`task_set` column); a baseline that scored other tasks than the runs is refused, since its numbers would
not be comparable; one from an eval that predates task-set records is kept and the report says it is unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from embedexp.analysis.report.collect import UNRECORDED
from embedexp.core.errors import ConfigError
from embedexp.evaluation.clustering import MEAN_KEY, read_results_row

STAGE = "baseline"
RESULTS = "eval_results.csv"


def results_file(path: str | Path) -> Path:
    """`eval_results.csv` of an eval output folder, or the file itself."""
    path = Path(path)
    csv = path / RESULTS if path.is_dir() else path
    if not csv.is_file():
        raise ConfigError(f"report: baselines: {csv} not found (an `embedexp eval` output folder holds {RESULTS})")
    return csv


def read_baseline(csv: Path) -> tuple[str, str, dict[str, float]]:
    """(model label, task set id, metric → score) of the last row of an eval results table."""
    labels, scores = read_results_row(csv)
    if MEAN_KEY not in scores:
        raise ConfigError(f"report: baselines: {csv} has no {MEAN_KEY} column (not an embedexp eval table)")
    return str(labels.get("model", csv.parent.name)), str(labels.get("task_set", UNRECORDED)), scores


def baseline_rows(paths: Sequence[str | Path], run_task_sets: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Long rows (config, stage=baseline, seed, metric, value, task_set, job) and notes for the report.

    Raises ConfigError when a baseline's recorded task set is none of the task sets the runs scored.
    """
    rows, notes = [], []
    if not run_task_sets:  # a table of baselines only: comparable when they scored one task set
        run_task_sets = sorted({read_baseline(results_file(path))[1] for path in paths})
        if len(run_task_sets) > 1:
            raise ConfigError(f"report: baselines scored different task sets ({', '.join(run_task_sets)})")
    known = set(run_task_sets) - {UNRECORDED}
    several = len(set(run_task_sets)) > 1
    for path in paths:
        csv = results_file(path)
        model, task_set, scores = read_baseline(csv)
        if task_set == UNRECORDED or not known:
            notes.append(f"baseline `{model}` ({csv}): task set not recorded, not checked")
        elif task_set not in known:
            raise ConfigError(
                f"report: baselines: {csv} scored task set {task_set}, the runs scored "
                f"{', '.join(sorted(known))}: evaluate the baseline on the runs' tasks (same `tasks=` overrides)"
            )
        if not several:
            task_set = next(iter(run_task_sets), task_set)  # one task set: the baseline joins its table
        label = f"baseline {model}" + (f" [tasks {task_set}]" if several else "")
        rows += [
            dict(config=label, stage=STAGE, seed="-", metric=metric, value=value, task_set=task_set, job=str(csv))
            for metric, value in scores.items()
        ]
    return pd.DataFrame(rows), notes
