"""The analysis as a result file for the docs (`result_file=`): the mean shares per model and layer, and over layers.

One row per (model, layer) and one per model with `layer` = `mean` (averaged over the analysed layers); columns
`model`, `layer` and the four shares, so a page can pick the means (`where=layer:mean`), one model
(`where=model:finetuned`), or draw a share against the layer (`x=layer y=final`) (docs/render.py).
"""

from __future__ import annotations

from pathlib import Path

from embedexp.analysis.attention_maps.analysis import ModelAttention
from embedexp.analysis.attention_maps.shares import SHARE_NAMES
from embedexp.core.results import Cell, portable_command, write_result_table

COLUMNS = ["model", "layer", *SHARE_NAMES]
MEAN_LAYER = "mean"  # the `layer` cell of a model's row averaged over the analysed layers
DIGITS = 6  # shares are rounded to this many decimals (they still sum to 1 within 1e-5)


def result_rows(results: list[ModelAttention]) -> list[list[Cell]]:
    """Each model's mean shares over the examples in every analysed layer, then over all analysed layers."""
    rows: list[list[Cell]] = []
    for result in results:
        per_layer = {name: result.shares[name].mean(dim=0) for name in SHARE_NAMES}  # [L]
        for j, layer in enumerate(result.layers):
            rows.append([result.name, int(layer), *(round(float(per_layer[k][j]), DIGITS) for k in SHARE_NAMES)])
        rows.append([result.name, MEAN_LAYER, *(round(float(per_layer[k].mean()), DIGITS) for k in SHARE_NAMES)])
    return rows


def result_notes(results: list[ModelAttention], texts: str, prompt: str) -> str:
    """What the shares mean, which texts and prompt were used, and which layers the mean row averages."""
    models = " and ".join(result.name for result in results)
    layers = results[0].layers
    return (
        f"shares of the final (pooled) token's attention, heads averaged, mean over {texts}; models: {models} "
        f"(finetuned = the base model with the command's adapter), prompt {prompt}. sink = the first real token, "
        "final = the final token's attention to itself, text = the other tokens of the input text, prompt = the "
        "template's other tokens (special tokens included); prompt + text + sink + final = 1 in every row. "
        f"`layer` {MEAN_LAYER}: the mean over the {len(layers)} analysed layers ({layers[0]}..{layers[-1]})"
    )


def texts_label(count: int, texts_file: str | None) -> str:
    """`the first 32 texts of <file>`, or `8 inline texts (...)`: which texts, with no absolute path below here."""
    if not texts_file:
        return f"{count} inline texts (conf/attention_maps.yaml's `texts`)"
    return f"the first {count} texts of {portable_command(str(texts_file))}"


def write_attention_result(
    path: str | Path, results: list[ModelAttention], model: str, command: str, texts: str, prompt: str
) -> Path:
    """Write the result file; its source records the weights' dtype the attention was computed in (no autocast)."""
    dtypes = sorted({result.dtype for result in results})
    title = f"final-token attention shares of {model}: " + (
        "base vs fine-tuned, per layer" if len(results) > 1 else "base model, per layer"
    )
    return write_result_table(
        path,
        title,
        COLUMNS,
        result_rows(results),
        command,
        precision={"attention": f"{' / '.join(dtypes)} weights, no autocast"},
        notes=result_notes(results, texts, prompt),
    )
