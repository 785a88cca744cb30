"""Report tables: configurations × metrics with mean ± CI (Markdown and CSV), and the best configuration per metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from embedexp.analysis.report.stats import metric_order


def format_score(mean: float, ci: float, n: int, digits: int = 4) -> str:
    """`0.4123 ± 0.0120`; one seed has no interval: `0.4123 (n=1)`."""
    if math.isnan(mean):
        return "–"
    if n < 2 or math.isnan(ci):
        return f"{mean:.{digits}f} (n={n})"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def wide_table(summary: pd.DataFrame, runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per (config, stage): its keys, n, seeds, then `<metric> mean`, `<metric> ci95`, `<metric> std`."""
    metrics = metric_order(list(summary["metric"].unique()))
    key_values = runs.drop_duplicates("config").set_index("config")[list(keys)] if keys else None
    rows = []
    for (config, stage), group in summary.groupby(["config", "stage"], sort=False):
        row = {"config": config}
        if key_values is not None:
            row.update(key_values.loc[config].to_dict())
        row.update(stage=stage, n=int(group["n"].max()), seeds=group.iloc[0]["seeds"])
        by_metric = group.set_index("metric")
        for metric in metrics:
            if metric in by_metric.index:
                values = by_metric.loc[metric]
                row.update(
                    {f"{metric} mean": values["mean"], f"{metric} ci95": values["ci"], f"{metric} std": values["std"]}
                )
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame) -> str:
    """Configurations × metrics, each cell mean ± CI half-width."""
    metrics = metric_order(list(summary["metric"].unique()))
    rows = []
    for (config, stage), group in summary.groupby(["config", "stage"], sort=False):
        by_metric = group.set_index("metric")
        row = {"config": config, "stage": stage, "n": int(group["n"].max())}
        for metric in metrics:
            values = by_metric.loc[metric] if metric in by_metric.index else None
            row[metric] = "–" if values is None else format_score(values["mean"], values["ci"], int(values["n"]))
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def best_markdown(best: pd.DataFrame) -> str:
    """The best configuration per metric, its runner-up, and whether their intervals are disjoint."""
    several_sets = "task_set" in best and best["task_set"].nunique(dropna=False) > 1
    rows = []
    for _, row in best.iterrows():
        runner_up = "–"
        if row["runner_up"] is not None:
            score = format_score(row["runner_up_mean"], row["runner_up_ci"], int(row["runner_up_n"]))
            runner_up = f"{row['runner_up']}: {score}"
        rows.append(
            {
                **({"task set": row["task_set"]} if several_sets else {}),
                "metric": row["metric"],
                "best configuration": f"{row['config']} ({row['stage']})",
                "mean ± CI": format_score(row["mean"], row["ci"], int(row["n"])),
                "runner-up": runner_up,
                "CIs disjoint": "yes" if row["separated"] else "no",
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False)
