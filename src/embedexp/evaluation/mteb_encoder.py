"""An mteb 2.x encoder around an `Embedder`: mteb hands it texts, it applies this run's prompt and pooling."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta

from embedexp.core.hardware import autocast_for, resolve_precision
from embedexp.model.embedder import Embedder


def build_model_meta(
    name: str,
    n_parameters: int,
    max_tokens: int,
    embed_dim: int,
    use_instructions: bool,
    training_datasets: Iterable[str] | Mapping[str, Any] | None = None,
    loader: Callable[..., Any] | None = None,
    loader_kwargs: dict[str, Any] | None = None,
    framework: tuple[str, ...] = ("PyTorch",),
) -> ModelMeta:
    """mteb metadata for an embedexp model; `training_datasets`: mteb dataset names (a mapping's keys) or None."""
    return ModelMeta(
        loader=loader,
        loader_kwargs=loader_kwargs or {},
        name=name if "/" in name else f"embedexp/{name}",
        revision="local",
        release_date=None,
        languages=["eng-Latn"],
        n_parameters=n_parameters,
        memory_usage_mb=None,
        max_tokens=max_tokens,
        embed_dim=embed_dim,
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=list(framework),
        similarity_fn_name="cosine",
        use_instructions=use_instructions,
        training_datasets=None if training_datasets is None else set(training_datasets),
    )


def model_meta(embedder: Embedder, name: str, embed_dim: int, training_datasets=None) -> ModelMeta:
    """mteb metadata for an embedexp model (name, size, dimension, context, cosine similarity, training data)."""
    return build_model_meta(
        name,
        n_parameters=sum(p.numel() for p in embedder.model.parameters()),
        max_tokens=embedder.max_length,
        embed_dim=embed_dim,
        use_instructions=embedder.prompt.template != "{text}",
        training_datasets=training_datasets,
    )


class MtebEncoder(AbsEncoder):
    """Encodes every text mteb passes with the wrapped embedder (length-sorted batches, L2-normalised)."""

    def __init__(
        self, embedder: Embedder, name: str = "embedexp-model", batch_size: int = 32, precision: str = "auto"
    ) -> None:
        """`precision` is the autocast used while encoding (auto, 32 or bf16)."""
        self.embedder, self.batch_size = embedder, batch_size
        self.precision = resolve_precision(precision, "eval.precision", "autocast", embedder.device.type)
        probe = embedder.encode(["probe"], batch_size=1)
        self.mteb_model_meta = model_meta(embedder, name, int(probe.shape[1]))

    def encode(
        self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None, **kwargs: Any
    ) -> np.ndarray:
        """Collect all texts of the dataloader, then embed them in one length-sorted pass (progress per task)."""
        texts = [text for batch in inputs for text in batch["text"]]
        with autocast_for(self.precision, self.embedder.device):
            return self.embedder.encode(texts, batch_size=self.batch_size, progress=f"embed {task_metadata.name}")
