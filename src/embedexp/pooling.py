"""Poolings: pure functions of (hidden states, attention mask, text mask[, final-token attention]) to one vector.

Add a variant by subclassing `Pooling` with a `name` and a `pool` method, then adding `conf/pooling/<name>.yaml`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from embedexp.errors import unknown_name

POOLINGS: dict[str, type[Pooling]] = {}


class Pooling:
    """Base pooling: picks the token mask (all tokens, or the text tokens only) and reduces hidden states."""

    name: ClassVar[str] = ""
    needs_attention: ClassVar[bool] = False

    def __init__(self, exclude_prompt: bool = False) -> None:
        """`exclude_prompt`: pool over the tokens of the text only, not the prompt around it."""
        self.exclude_prompt = exclude_prompt

    def __init_subclass__(cls, **kwargs) -> None:
        """Register every named subclass under its name."""
        super().__init_subclass__(**kwargs)
        if cls.name:
            POOLINGS[cls.name] = cls

    def __call__(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pool `hidden` [B, T, H] to [B, H] over the selected tokens (float32)."""
        mask = self.token_mask(attention_mask, text_mask)
        return self.pool(hidden.float(), mask, attention)

    def token_mask(self, attention_mask: torch.Tensor, text_mask: torch.Tensor | None) -> torch.Tensor:
        """Boolean [B, T] mask of pooled tokens; rows without text tokens fall back to all tokens."""
        mask = attention_mask.bool()
        if self.exclude_prompt and text_mask is not None:
            text = mask & text_mask.bool()
            mask = torch.where(text.any(dim=1, keepdim=True), text, mask)
        return mask

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, attention: torch.Tensor | None) -> torch.Tensor:
        """Reduce [B, T, H] hidden states over the True positions of `mask` to [B, H]."""
        raise NotImplementedError

    def __repr__(self) -> str:
        """Readable name with options."""
        return f"{type(self).__name__}(exclude_prompt={self.exclude_prompt})"


def weighted_average(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum of hidden states weighted by non-negative [B, T] weights, normalised per row."""
    weights = weights.to(hidden.dtype)
    total = weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(hidden.dtype).tiny)
    return torch.einsum("bt,bth->bh", weights / total, hidden)


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True position in each row (right or left padding alike)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, -1).max(dim=1).values.clamp_min(0)


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at the last True position of each row."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index(mask)]


class MeanPooling(Pooling):
    """Average of the selected token states."""

    name = "mean"

    def pool(self, hidden, mask, attention=None):
        """Masked mean."""
        return weighted_average(hidden, mask)


class LastTokenPooling(Pooling):
    """State of the last selected token (the EOS / final prompt token for decoders)."""

    name = "last"

    def pool(self, hidden, mask, attention=None):
        """Gather the last non-pad position of each row."""
        return last_token(hidden, mask)


class WeightedMeanPooling(Pooling):
    """SGPT position-weighted mean: the i-th selected token gets weight i (later tokens saw more context)."""

    name = "weighted_mean"

    def pool(self, hidden, mask, attention=None):
        """Linearly increasing weights over the selected tokens."""
        return weighted_average(hidden, mask.cumsum(dim=1) * mask)


class MaxPooling(Pooling):
    """Element-wise maximum over the selected token states."""

    name = "max"

    def pool(self, hidden, mask, attention=None):
        """Masked max."""
        return hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).max(dim=1).values


class ConcatPooling(Pooling):
    """Last-token state concatenated with the mean (twice the hidden size)."""

    name = "concat"

    def pool(self, hidden, mask, attention=None):
        """[last ; mean]."""
        return torch.cat([last_token(hidden, mask), weighted_average(hidden, mask)], dim=-1)


class AttentionPooling(Pooling):
    """Semantic-aware aggregation: token states weighted by the final token's attention to them.

    `attention` is [B, T]: the last token's attention over input tokens (mean over heads of `layers`),
    computed by `embedexp.attention`. The first pooled token (the attention sink) is skipped unless
    `keep_sink` is set.
    """

    name = "attention"
    needs_attention = True

    def __init__(self, exclude_prompt: bool = False, layers: tuple[int, ...] = (-1,), keep_sink: bool = False) -> None:
        """`layers`: decoder layers whose final-token attention is averaged."""
        super().__init__(exclude_prompt)
        self.layers = tuple(int(layer) for layer in layers)
        self.keep_sink = keep_sink

    def pool(self, hidden, mask, attention=None):
        """Attention-weighted mean of the selected tokens."""
        if attention is None:
            raise ValueError("attention pooling needs the final token's attention weights")
        weights = attention.float() * mask
        if not self.keep_sink:
            first = mask.float().argmax(dim=1)
            sink = torch.zeros_like(mask).scatter_(1, first.unsqueeze(1), True)
            has_more = mask.sum(dim=1, keepdim=True) > 1
            weights = weights.masked_fill(sink & has_more, 0.0)
        # rows whose weights vanished (e.g. all attention on the sink) fall back to the mean
        weights = torch.where(weights.sum(dim=1, keepdim=True) > 0, weights, mask.float())
        return weighted_average(hidden, weights)

    def __repr__(self) -> str:
        """Readable name with options."""
        return (
            f"AttentionPooling(exclude_prompt={self.exclude_prompt}, layers={self.layers}, keep_sink={self.keep_sink})"
        )


def build_pooling(name: str, **options) -> Pooling:
    """Instantiate a registered pooling by name; unknown names list the valid ones."""
    if name not in POOLINGS:
        raise unknown_name("pooling", name, list(POOLINGS))
    return POOLINGS[name](**options)
