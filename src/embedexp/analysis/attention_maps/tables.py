"""Tables of the analysis: shares per layer, attention per token, top text tokens, and the Markdown summary."""

from __future__ import annotations

import pandas as pd
import torch

from embedexp.analysis.attention_maps.analysis import ModelAttention
from embedexp.analysis.attention_maps.shares import SHARE_NAMES, top_text_tokens


def share_frame(results: list[ModelAttention], per_head: bool = False) -> pd.DataFrame:
    """Long table: model × example × layer (× head if `per_head`; head 'mean' = heads averaged) → the 4 shares."""
    rows = []
    for result in results:
        n_examples = result.shares["prompt"].shape[0]
        n_heads = result.head_shares["prompt"].shape[2]
        for example in range(n_examples):
            for j, layer in enumerate(result.layers):
                base = {"model": result.name, "example": example, "layer": layer}
                rows.append({**base, "head": "mean", **{k: float(result.shares[k][example, j]) for k in SHARE_NAMES}})
                for head in range(n_heads) if per_head else ():
                    values = {k: float(result.head_shares[k][example, j, head]) for k in SHARE_NAMES}
                    rows.append({**base, "head": str(head), **values})
    frame = pd.DataFrame(rows)
    frame["total"] = frame[list(SHARE_NAMES)].sum(axis=1)
    return frame.rename(columns={k: f"{k}_share" for k in SHARE_NAMES})


def token_frame(results: list[ModelAttention], per_head: bool = False) -> pd.DataFrame:
    """Wide table: model × example × token → attention in each layer `L<i>` (heads averaged), their `mean`,
    and with `per_head` each head `L<i>.h<h>`."""
    parts = []
    for result in results:
        for index, example in enumerate(result.examples):
            head_mean = example.head_mean()
            part = pd.DataFrame(
                {
                    "model": result.name,
                    "example": index,
                    "position": range(len(example.tokens)),
                    "token": example.tokens,
                    "kind": example.kinds,
                }
            )
            columns = {f"L{layer}": head_mean[j].tolist() for j, layer in enumerate(result.layers)}
            columns["mean"] = head_mean.mean(dim=0).tolist()
            if per_head:
                for j, layer in enumerate(result.layers):
                    for head in range(example.weights.shape[1]):
                        columns[f"L{layer}.h{head}"] = example.weights[j, head].tolist()
            parts.append(pd.concat([part, pd.DataFrame(columns)], axis=1))
    return pd.concat(parts, ignore_index=True)


def top_frame(results: list[ModelAttention], k: int) -> pd.DataFrame:
    """The `k` text tokens (sink and final excluded) with the most attention (heads and analysed layers averaged)
    per example."""
    rows = []
    for result in results:
        for index, example in enumerate(result.examples):
            attention = example.head_mean().mean(dim=0, keepdim=True)
            text_mask = torch.tensor([[kind == "text" for kind in example.kinds]])
            ranked = top_text_tokens(attention, torch.ones_like(text_mask), text_mask, k)[0]
            for rank, (position, value) in enumerate(ranked, start=1):
                rows.append(
                    {
                        "model": result.name,
                        "example": index,
                        "rank": rank,
                        "position": position,
                        "token": example.tokens[position],
                        "attention": value,
                        "text": example.text,
                    }
                )
    return pd.DataFrame(rows, columns=["model", "example", "rank", "position", "token", "attention", "text"])


def summary_frame(results: list[ModelAttention]) -> pd.DataFrame:
    """Mean shares over examples per model: averaged over the analysed layers, and in the last analysed layer."""
    rows = []
    for result in results:
        last = result.layers[-1]
        scopes = {"mean over layers": slice(None), f"last analysed layer ({last})": slice(-1, None)}
        for scope, columns in scopes.items():
            values = {k: float(result.shares[k][:, columns].mean()) for k in SHARE_NAMES}
            rows.append({"model": result.name, "scope": scope, **values})
    frame = pd.DataFrame(rows)
    names = frame["model"].unique().tolist()
    if len(names) == 2:
        before, after = (frame[frame["model"] == name].set_index("scope") for name in names)
        change = (after[list(SHARE_NAMES)] - before[list(SHARE_NAMES)]).reset_index()
        change.insert(0, "model", f"change ({names[1]} - {names[0]})")
        frame = pd.concat([frame, change], ignore_index=True)
    return frame


def summary_markdown(summary: pd.DataFrame, top: pd.DataFrame, meta: dict[str, str], n_top_examples: int = 4) -> str:
    """A short report: the setting, the mean shares per model, and the top text tokens of a few examples."""
    lines = ["# Where the final token looks: attention shares", ""]
    lines += [f"- **{key}**: {value}" for key, value in meta.items()]
    lines += [
        "",
        "Shares of the last token's attention (heads averaged, mean over examples). `sink` = the first real token; "
        "`final` = the last token itself (its attention to itself); `text` = the other tokens of the input text; "
        "`prompt` = every other token (template words, special tokens). prompt + text + sink + final = 1.",
        "",
        summary.to_markdown(index=False, floatfmt=".4f"),
        "",
        "## Top text tokens (attention averaged over heads and analysed layers)",
        "",
    ]
    for example in sorted(top["example"].unique())[:n_top_examples]:
        rows = top[top["example"] == example]
        lines.append(f"- example {example}: {rows['text'].iloc[0]!r}")
        for model, group in rows.groupby("model", sort=False):
            tokens = ", ".join(f"{t.strip()!r} {a:.3f}" for t, a in zip(group["token"], group["attention"]))
            lines.append(f"  - {model}: {tokens}")
    return "\n".join(lines) + "\n"
