"""Run texts through an embedder and keep the final token's attention per example, with token labels and kinds."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embedexp.analysis.attention_maps.shares import SHARE_NAMES, attention_shares, token_kinds
from embedexp.core.errors import DataError
from embedexp.data.reader import read_texts
from embedexp.model.embedder import Embedder
from embedexp.model.manifest import frozen_dtype_name


@dataclass
class ExampleAttention:
    """One text: its real tokens (prompt included), their kinds, and the last token's attention [L, H, T]."""

    text: str
    tokens: list[str]
    kinds: list[str]
    weights: torch.Tensor

    def head_mean(self) -> torch.Tensor:
        """[L, T]: attention averaged over heads."""
        return self.weights.mean(dim=1)


@dataclass
class ModelAttention:
    """All examples of one model (`base` or `finetuned`) and their shares, per layer and per layer × head."""

    name: str
    layers: tuple[int, ...]
    examples: list[ExampleAttention]
    shares: dict[str, torch.Tensor]  # share name -> [N, L] (heads averaged)
    head_shares: dict[str, torch.Tensor]  # share name -> [N, L, H]
    dtype: str = "float32"  # the base weights' dtype the attention was computed in (no autocast)


def token_label(tokenizer, token_id: int) -> str:
    """The token as text (leading spaces kept), e.g. ' world'; undecodable ids fall back to the vocabulary entry."""
    text = tokenizer.decode([token_id])
    return text if text and "\ufffd" not in text else str(tokenizer.convert_ids_to_tokens(token_id))


def analyse(
    embedder: Embedder, texts: list[str], name: str, layers: tuple[int, ...] | None = None, batch_size: int = 8
) -> ModelAttention:
    """Final-token attention of every text through exactly the embedding path (`Embedder.tokenize` + `run`)."""
    was_training = embedder.model.training
    embedder.model.eval()
    examples: list[ExampleAttention] = []
    shares: dict[str, list[torch.Tensor]] = {k: [] for k in SHARE_NAMES}
    head_shares: dict[str, list[torch.Tensor]] = {k: [] for k in SHARE_NAMES}
    found_layers: tuple[int, ...] = ()
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                batch = embedder.tokenize(chunk)
                _, attention = embedder.run(batch, with_attention=True, layers=layers)
                weights = attention.weights.cpu()
                found_layers = attention.layers
                for key, value in attention_shares(weights, batch.attention_mask, batch.text_mask).items():
                    head_shares[key].append(value)
                for key, value in attention_shares(weights.mean(dim=2), batch.attention_mask, batch.text_mask).items():
                    shares[key].append(value)
                examples.extend(_examples(embedder.tokenizer, chunk, batch, weights))
    finally:
        embedder.model.train(was_training)
    return ModelAttention(
        name,
        found_layers,
        examples,
        {k: torch.cat(v) for k, v in shares.items()},
        {k: torch.cat(v) for k, v in head_shares.items()},
        frozen_dtype_name(embedder.model),
    )


def _examples(tokenizer, texts: list[str], batch, weights: torch.Tensor) -> list[ExampleAttention]:
    """Cut a padded batch into per-example records over the real tokens only."""
    kinds = token_kinds(batch.attention_mask, batch.text_mask)
    out = []
    for row, text in enumerate(texts):
        real = batch.attention_mask[row].bool()
        ids = batch.input_ids[row][real].tolist()
        row_kinds = [
            next(name for name in SHARE_NAMES if kinds[name][row, position])
            for position in real.nonzero().flatten().tolist()
        ]
        out.append(
            ExampleAttention(text, [token_label(tokenizer, i) for i in ids], row_kinds, weights[row][..., real].clone())
        )
    return out


def load_texts(
    texts: list[str] | None, texts_file: str | None, text_column: str = "text", max_texts: int | None = None
) -> list[str]:
    """The texts to analyse: `texts_file` (.txt one per line, or a table's `text_column`; any .gz too) else `texts`."""
    found = read_texts(texts_file, text_column, "texts_file") if texts_file else list(texts or [])
    found = [t for t in (str(t).strip() for t in found) if t]
    if max_texts:
        found = found[:max_texts]
    if not found:
        raise DataError("no texts to analyse: set `texts` (a list) or `texts_file`")
    return found
