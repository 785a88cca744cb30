"""Bar chart of the report: one panel per metric, a bar per configuration and stage, 95 % CI error bars."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from embedexp.analysis.report.stats import metric_order  # noqa: E402

STAGE_STYLE = {
    "fine_tuned": dict(color="tab:blue", hatch=None),
    "zero_shot": dict(color="tab:gray", hatch="//"),
    "baseline": dict(color="tab:green", hatch=".."),
}


def plot_report(summary: pd.DataFrame, title: str = "", confidence: float = 0.95) -> plt.Figure:
    """Horizontal bars (mean) with error bars (CI half-width; none where one seed left it undefined)."""
    metrics = metric_order(list(summary["metric"].unique()))
    bars = list(dict.fromkeys(zip(summary["config"], summary["stage"])))
    n_cols = min(3, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    height = max(2.5, 0.32 * len(bars) + 1.2)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, height * n_rows), squeeze=False)
    labels = [f"{config} ({stage})" for config, stage in bars]
    for index, metric in enumerate(metrics):
        ax = axes[index // n_cols][index % n_cols]
        rows = summary[summary["metric"] == metric].set_index(["config", "stage"])
        for position, bar in enumerate(bars):
            if bar not in rows.index:
                continue
            row = rows.loc[bar]
            style = STAGE_STYLE.get(bar[1], dict(color="tab:orange", hatch=None))
            error = None if math.isnan(row["ci"]) else row["ci"]
            ax.barh(
                position, row["mean"], xerr=error, capsize=3, color=style["color"], hatch=style["hatch"], alpha=0.85
            )
        ax.set_yticks(range(len(bars)))
        ax.set_yticklabels(labels if index % n_cols == 0 else [""] * len(bars), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("V-measure", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    for index in range(len(metrics), n_rows * n_cols):
        axes[index // n_cols][index % n_cols].axis("off")
    fig.suptitle(f"{title}  (mean over seeds, error bars: {confidence:.0%} CI)".strip(), fontsize=10)
    fig.tight_layout()
    return fig
