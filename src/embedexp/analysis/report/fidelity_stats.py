"""Rank agreement between a cheap score and a reference score across runs: Spearman's rho with a bootstrap interval.

Used to check the epoch-end callback (a few hundred texts per task) against full-size evaluations of the same
adapters: if the callback ranks runs like the full evaluation, a search can be run on the callback.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

FIDELITY_COLUMNS = ["metric", "n_docs", "n_runs", "spearman", "ci_low", "ci_high", "seconds"]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of paired values (average ranks for ties); NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} values against {len(y)}")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def bootstrap_spearman(
    x: Sequence[float], y: Sequence[float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(rho, low, high): rho of all pairs and the percentile interval of rho over paired resamples of the runs.

    `scipy.stats.bootstrap(paired=True, method="percentile")` draws the resamples; those whose scores are constant on
    either side (rho undefined) are left out of the quantiles. The interval is scipy's, not widened to contain rho.
    With fewer than 3 runs, or no defined resample, the interval is NaN.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = spearman(x, y)
    if len(x) < 3 or math.isnan(rho):
        return rho, math.nan, math.nan
    with warnings.catch_warnings():  # constant resamples: rho is NaN there, dropped below
        warnings.simplefilter("ignore", (stats.ConstantInputWarning, stats.DegenerateDataWarning, RuntimeWarning))
        result = stats.bootstrap(
            (x, y),
            _spearman_along,
            n_resamples=n_resamples,
            paired=True,
            vectorized=True,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    values = result.bootstrap_distribution
    if np.isnan(values).all():
        return rho, math.nan, math.nan
    if np.isnan(values).any():  # scipy's quantiles propagate NaN: the same percentiles over the defined resamples
        alpha = (1 - confidence) / 2
        low, high = np.nanquantile(values, [alpha, 1 - alpha])
        return rho, float(low), float(high)
    return rho, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _spearman_along(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along `axis` of paired arrays: Pearson's r of average ranks (NaN where a side is constant)."""
    return stats.pearsonr(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis).statistic


def fidelity_table(
    scores: pd.DataFrame,
    reference_n_docs: int | str,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Correlation of every size with the reference size, per metric, across runs.

    `scores`: long table with columns run, n_docs, metric, value and optionally seconds (the cost of scoring that
    run at that size, summed over tasks: recorded on the `clustering_mean` rows). Returns FIDELITY_COLUMNS, one row
    per (metric, n_docs) other than the reference; `seconds` is the median cost per run.
    """
    reference = scores[scores["n_docs"].astype(str) == str(reference_n_docs)]
    if reference.empty:
        raise ValueError(f"fidelity: no scores at the reference size {reference_n_docs!r}")
    full = reference.set_index(["run", "metric"])["value"]
    rows = []
    for (metric, n_docs), group in scores.groupby(["metric", "n_docs"], sort=False):
        if str(n_docs) == str(reference_n_docs):
            continue
        paired = group.set_index("run")["value"]
        runs = [r for r in paired.index if (r, metric) in full.index]
        if not runs:  # a metric the reference lacks (e.g. the callback's Matryoshka prefixes)
            continue
        rho, low, high = bootstrap_spearman(
            paired.loc[runs].to_numpy(), full.loc[[(r, metric) for r in runs]].to_numpy(), n_resamples, confidence, seed
        )
        seconds = group["seconds"].median() if "seconds" in group and group["seconds"].notna().any() else math.nan
        row = dict(metric=metric, n_docs=n_docs, n_runs=len(runs), spearman=rho, ci_low=low, ci_high=high)
        rows.append({**row, "seconds": float(seconds)})
    table = pd.DataFrame(rows, columns=FIDELITY_COLUMNS)
    order = table["n_docs"].map(lambda n: (not str(n).isdigit(), int(n) if str(n).isdigit() else 0, str(n)))
    return table.assign(_order=order).sort_values(["metric", "_order"], kind="stable").drop(columns="_order")


def smallest_faithful_size(
    table: pd.DataFrame, min_rho: float = 0.9, max_seconds: float | None = None, metric: str = "clustering_mean"
) -> int | None:
    """The smallest numeric n_docs whose rho for `metric` is ≥ `min_rho` (and cost ≤ `max_seconds`), else None."""
    rows = table[(table["metric"] == metric) & table["n_docs"].map(lambda n: str(n).isdigit())]
    rows = rows[rows["spearman"] >= min_rho]
    if max_seconds is not None:
        rows = rows[rows["seconds"] <= max_seconds]
    return int(min(int(n) for n in rows["n_docs"])) if not rows.empty else None
