"""Self-check: an export must reproduce the training module's embeddings of a fixed probe set, or it is not finished.

The reference is the training Embedder (float32, no autocast) with left and with right padding; the export is reloaded
from disk and encodes the same probes with left and with right padding. Every probe's cosine similarity in all four
(export side, reference side) combinations must reach `min_cosine`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedexp.core.errors import EmbedexpError
from embedexp.export.load import load_export
from embedexp.model.embedder import Embedder

log = logging.getLogger(__name__)
SIDES = ("left", "right")

# Varied on purpose: short and long (past any max_length, so truncation is exercised), punctuation right at the
# prompt's boundaries (tokens that merge across `"` in string-concatenated prompts), non-ASCII, newlines, whitespace.
PROBE_TEXTS = (
    "Chess engine",
    "A fast, lightweight text editor for the terminal.",
    '"Quoted" words (and brackets) at the start, a question at the end?',
    "Library for reading and writing PNG, JPEG and TIFF images; includes command-line tools and Python bindings.",
    "naïve café — Ünïcödé, 東京 and emoji 🙂!",
    "line one\nline two\tand a tab",
    "   leading and trailing spaces   ",
    " ".join(["A long description that goes on and on about compilers, kernels, networks and databases."] * 40),
)


class SelfCheckError(EmbedexpError):
    """An export does not reproduce the training module's embeddings; it was not finished."""


def reference_vectors(embedder: Embedder, texts: list[str]) -> dict[str, np.ndarray]:
    """The training module's L2-normalised embeddings of `texts`, one padded batch per padding side (float32)."""
    saved = embedder.padding_side
    vectors = {}
    try:
        for side in SIDES:
            embedder.padding_side = side
            with torch.autocast(embedder.device.type, enabled=False):
                vectors[side] = embedder.encode(texts, batch_size=len(texts))
    finally:
        embedder.padding_side = saved
    return vectors


def compare(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-text cosine similarities between export and reference vectors for every pair of padding sides."""
    pairs = {}
    for export_side, vectors in candidate.items():
        for reference_side, expected in reference.items():
            if vectors.shape != expected.shape:
                raise SelfCheckError(
                    f"export gives embeddings of shape {vectors.shape}, the training module {expected.shape}"
                )
            pairs[f"export_{export_side}/reference_{reference_side}"] = np.sum(vectors * expected, axis=1)
    minimum = float(min(values.min() for values in pairs.values()))
    return {
        "min_cosine": minimum,
        "pairs": {key: [round(float(v), 7) for v in values] for key, values in pairs.items()},
    }


def check_export(
    folder: str | Path, reference: dict[str, np.ndarray], texts: list[str], min_cosine: float = 0.9999
) -> dict[str, Any]:
    """Reload `folder` from disk, embed `texts` with left and right padding, and raise unless all cosines pass."""
    try:
        loaded = load_export(folder)
        candidate = {side: loaded.encode(texts, batch_size=len(texts), padding_side=side) for side in SIDES}
    except Exception as err:  # a folder that cannot be reloaded or cannot embed fails its check
        raise SelfCheckError(f"export at {folder} could not be reloaded and used to embed the probes: {err}") from err
    result = compare(candidate, reference)
    result.update(threshold=min_cosine, n_probes=len(texts), passed=result["min_cosine"] >= min_cosine)
    if not result["passed"]:
        worst = _worst(result["pairs"], texts)
        raise SelfCheckError(
            f"{loaded.form} export does not reproduce the training module: min cosine {result['min_cosine']:.6f} "
            f"< {min_cosine} ({worst}); nothing was written"
        )
    log.info(
        "self-check %s: min cosine %.7f over %d probes x 4 padding pairs", loaded.form, result["min_cosine"], len(texts)
    )
    return result


def _worst(pairs: dict[str, list[float]], texts: list[str]) -> str:
    """Describe the worst probe: padding pair, cosine and the start of the text."""
    key, values = min(pairs.items(), key=lambda item: min(item[1]))
    index = int(np.argmin(values))
    return f"{key}, probe {index} {texts[index][:40]!r}: cosine {values[index]:.6f}"
