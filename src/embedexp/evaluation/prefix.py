"""Clustering at truncated embedding sizes (Matryoshka): each task's texts are embedded once, scored at every prefix."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedexp.evaluation.mteb_encoder import MtebEncoder
from embedexp.model.matryoshka import truncate_normalized


def dim_key(name: str, dim: int) -> str:
    """`<task>@<dim>`: the score key of a task (or `clustering_mean`) at a truncated size."""
    return f"{name}@{dim}"


class PrefixEncoder(MtebEncoder):
    """An `MtebEncoder` that keeps the full vectors of each text list and serves their first `dim` dimensions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Same arguments as `MtebEncoder`; `dim` None serves the full vectors."""
        super().__init__(*args, **kwargs)
        self.dim: int | None = None
        self.full: dict[str, np.ndarray] = {}

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None, **kwargs: Any):
        """Embed a text list once (full size), then truncate and re-normalise to `dim`."""
        texts = [text for batch in inputs for text in batch["text"]]
        key = hashlib.sha1("\x00".join(texts).encode()).hexdigest()
        if key not in self.full:
            self.full[key] = super().encode(
                [{"text": texts}], task_metadata=task_metadata, hf_split=hf_split, hf_subset=hf_subset
            )
        return truncate_normalized(self.full[key], self.dim)


def usable_dims(dims: Sequence[int | str | None] | None, embed_dim: int) -> list[int]:
    """The integer sizes below the full embedding size (`full`, null and sizes >= it are the plain scores)."""
    return sorted({int(d) for d in dims or () if isinstance(d, int) and 0 < d < embed_dim})
