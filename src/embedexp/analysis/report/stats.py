"""Mean and Student-t confidence interval over seeds, per configuration, stage and metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from embedexp.analysis.report.collect import STAGE_ORDER

MEAN_METRIC = "clustering_mean"


def confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, half-width, sample std, n) of `values`.

    half-width = t_{(1+confidence)/2, n-1} · s / √n with s the sample standard deviation (ddof=1): the interval
    mean ± half-width covers the true mean with probability `confidence` if the seeds' scores are normal. With one
    value the interval is undefined: half-width and std are NaN.
    """
    array = np.asarray(list(values), dtype=float)
    n = len(array)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(array.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))
    return mean, half, std, n


def metric_order(metrics: Sequence[str]) -> list[str]:
    """Task metrics sorted by name, the mean over tasks last."""
    names = sorted(set(metrics) - {MEAN_METRIC})
    return names + ([MEAN_METRIC] if MEAN_METRIC in metrics else [])


def summarize(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (config, stage, metric): n, seeds, mean, ci (half-width), ci_low, ci_high, std.

    Configurations keep the order of their first job; stages go fine_tuned, zero_shot.
    """
    columns = ["config", "stage", "metric", "n", "seeds", "mean", "ci", "ci_low", "ci_high", "std", "task_set"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    config_rank = {c: i for i, c in enumerate(dict.fromkeys(runs["config"]))}
    metric_rank = {m: i for i, m in enumerate(metric_order(list(runs["metric"].unique())))}
    rows = []
    for (config, stage, metric), group in runs.groupby(["config", "stage", "metric"], sort=False):
        mean, half, std, n = confidence_interval(group["value"].tolist(), confidence)
        seeds = " ".join(str(s) for s in sorted(group["seed"].tolist(), key=str))
        rows.append(
            dict(
                config=config,
                stage=stage,
                metric=metric,
                n=n,
                seeds=seeds,
                mean=mean,
                ci=half,
                ci_low=mean - half,
                ci_high=mean + half,
                std=std,
                task_set=group["task_set"].iloc[0] if "task_set" in group else None,
            )
        )
    frame = pd.DataFrame(rows, columns=columns)
    stage_rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    order = frame.apply(
        lambda r: (config_rank[r["config"]], stage_rank.get(r["stage"], 9), metric_rank[r["metric"]]), axis=1
    )
    return frame.loc[order.sort_values().index].reset_index(drop=True)


def best_per_metric(summary: pd.DataFrame) -> pd.DataFrame:
    """For each task set and metric the (config, stage) with the highest mean, the runner-up, and whether their CIs
    are disjoint.

    Configurations are ranked only against others that scored the same task set. `separated` is False when the
    intervals overlap or either is undefined (one seed): then the ranking is not supported by the seeds' spread.
    """
    task_set_column = summary["task_set"] if "task_set" in summary else pd.Series([None] * len(summary))
    frames = [
        _best_of(summary[task_set_column.values == task_set], task_set)
        for task_set in dict.fromkeys(task_set_column.tolist())
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _best_of(summary: pd.DataFrame, task_set) -> pd.DataFrame:
    """`best_per_metric` within one task set."""
    rows = []
    for metric in metric_order(list(summary["metric"].unique())):
        ranked = summary[summary["metric"] == metric].sort_values("mean", ascending=False, kind="stable")
        best = ranked.iloc[0]
        row = dict(metric=metric, task_set=task_set, config=best["config"], stage=best["stage"], n=best["n"])
        row.update(mean=best["mean"], ci=best["ci"])
        if len(ranked) > 1:
            second = ranked.iloc[1]
            separated = bool(
                not math.isnan(best["ci"]) and not math.isnan(second["ci"]) and best["ci_low"] > second["ci_high"]
            )
            row.update(runner_up=f"{second['config']} ({second['stage']})", runner_up_mean=second["mean"])
            row.update(runner_up_ci=second["ci"], runner_up_n=second["n"], separated=separated)
        else:
            row.update(runner_up=None, runner_up_mean=math.nan, runner_up_ci=math.nan, runner_up_n=0, separated=False)
        rows.append(row)
    return pd.DataFrame(rows)
