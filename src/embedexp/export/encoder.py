"""Any saved model as one `TextEncoder`: an exported folder, a training run's adapter or checkpoint, or the groups."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from omegaconf import DictConfig


class TextEncoder(Protocol):
    """Anything that embeds a list of texts to an L2-normalised [N, D] array."""

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray: ...


class _EmbedderEncoder:
    """An Embedder behind the `TextEncoder` interface."""

    def __init__(self, embedder) -> None:
        """Wrap a training-style Embedder."""
        self.embedder = embedder

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings."""
        return self.embedder.encode(texts, batch_size=batch_size, show_progress=show_progress)


def load_encoder(cfg: DictConfig) -> TextEncoder:
    """An exported folder (`model_path`), else the training Embedder from run_dir/adapter_path/ckpt_path or groups."""
    if cfg.get("model_path"):
        from embedexp.export.load import load_export

        return load_export(cfg.model_path)
    from embedexp.export.source import load_export_source

    return _EmbedderEncoder(load_export_source(cfg, require_weights=False).embedder)
