"""Figures of the analysis (matplotlib, Agg backend): per-example heatmaps and shares per layer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from embedexp.analysis.attention_maps.analysis import ExampleAttention, ModelAttention  # noqa: E402
from embedexp.analysis.attention_maps.shares import SHARE_NAMES  # noqa: E402
from embedexp.core.atomic import atomic_file  # noqa: E402

KIND_COLORS = {"sink": "tab:red", "prompt": "dimgray", "text": "black", "final": "tab:blue"}
MODEL_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
FLOOR = 1e-4  # attention below this is drawn as this (log colour scale)


def display_token(token: str, width: int = 14) -> str:
    """A readable tick label: whitespace made visible, mathtext `$` escaped, long tokens shortened."""
    label = token.replace("\n", "\\n").replace("\t", "\\t").strip() or "␣"
    if len(label) > width:
        label = label[: width - 1] + "…"
    return label.replace("$", r"\$")


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write a PNG atomically and close the figure."""
    with atomic_file(path) as staging:
        fig.savefig(staging, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_heatmap(example: ExampleAttention, layers: tuple[int, ...], title: str, path: Path) -> Path:
    """Layers × tokens heatmap of the last token's attention (heads averaged, log colour scale)."""
    values = np.clip(example.head_mean().numpy(), FLOOR, 1.0)
    n_layers, n_tokens = values.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * n_tokens + 2.5), max(3.0, 0.22 * n_layers + 1.8)))
    image = ax.imshow(values, aspect="auto", cmap="viridis", norm=LogNorm(vmin=FLOOR, vmax=1.0), origin="lower")
    ax.set_xticks(range(n_tokens))
    ax.set_xticklabels([display_token(t) for t in example.tokens], rotation=90, fontsize=8)
    for tick, kind in zip(ax.get_xticklabels(), example.kinds):
        tick.set_color(KIND_COLORS[kind])
        if kind == "text":
            tick.set_fontweight("bold")
    step = max(1, n_layers // 15)
    ax.set_yticks(range(0, n_layers, step))
    ax.set_yticklabels([str(layers[i]) for i in range(0, n_layers, step)], fontsize=8)
    ax.set_ylabel("layer")
    ax.set_xlabel("input token (bold black: text, grey: prompt, red: sink, blue: final)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="attention of the last token (mean over heads)")
    return save_figure(fig, path)


def plot_shares_by_layer(results: list[ModelAttention], path: Path) -> Path:
    """Grouped bars per layer of each share (mean ± std over examples), one bar per model."""
    size = (max(7.0, 0.4 * len(results[0].layers) + 2), 2.0 * len(SHARE_NAMES) + 2)
    fig, axes = plt.subplots(len(SHARE_NAMES), 1, figsize=size, sharex=True)
    width = 0.8 / len(results)
    for m, result in enumerate(results):
        x = np.arange(len(result.layers)) + (m - (len(results) - 1) / 2) * width
        for ax, share in zip(axes, SHARE_NAMES):
            values = result.shares[share].numpy()
            mean, std = values.mean(axis=0), values.std(axis=0)
            color = MODEL_COLORS[m % len(MODEL_COLORS)]
            ax.bar(x, mean, width, yerr=std, color=color, label=f"{result.name} (mean {mean.mean():.3f})", capsize=0)
    for ax, share in zip(axes, SHARE_NAMES):
        ax.set_ylabel(f"{share} share")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    layers = results[0].layers
    step = max(1, len(layers) // 30)
    axes[-1].set_xticks(range(0, len(layers), step))
    axes[-1].set_xticklabels([str(layers[i]) for i in range(0, len(layers), step)], fontsize=8)
    axes[-1].set_xlabel("layer")
    axes[0].set_title("Final-token attention on prompt / text / sink / final tokens per layer (mean ± std)")
    return save_figure(fig, path)
