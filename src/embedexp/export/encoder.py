"""Any saved model as one `TextEncoder`: whatever `embedexp.export.resolve.open_model` opens (an exported or
sentence-transformers folder, a training run's adapter or checkpoint, or the base model of the groups)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    """Anything that embeds a list of texts to an L2-normalised [N, D] array."""

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray: ...


class EmbedderEncoder:
    """An Embedder behind the `TextEncoder` interface."""

    def __init__(self, embedder) -> None:
        """Wrap a training-style Embedder."""
        self.embedder = embedder

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings."""
        return self.embedder.encode(texts, batch_size=batch_size, show_progress=show_progress)


class SentenceTransformerEncoder:
    """A plain sentence-transformers folder behind the `TextEncoder` interface."""

    def __init__(self, path: str) -> None:
        """Load the folder (its own modules only: no remote code)."""
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device="cpu")

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """L2-normalised float32 embeddings."""
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=show_progress, normalize_embeddings=True
        )
        return np.asarray(vectors, dtype=np.float32)
