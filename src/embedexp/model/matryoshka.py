"""Matryoshka truncation: the first `dim` dimensions of an embedding, re-normalised (evaluation and export)."""

from __future__ import annotations

import numpy as np


def truncate_normalized(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """The first `dim` dimensions of each row, L2-normalised again; None leaves the vectors as they are."""
    if dim is None:
        return vectors
    head = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    return head / np.maximum(np.linalg.norm(head, axis=1, keepdims=True), np.finfo(np.float32).tiny)
