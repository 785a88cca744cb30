"""Poolings: (hidden states, attention mask, text mask[, final-token attention]) to one vector.

Every pooling is a `torch.nn.Module`, so one can carry trainable weights (`latent_attention`): they become part of the
Embedder, train with the LoRA, and are saved with the adapter (`pooling.safetensors`) and in exports.
Add a variant by subclassing `Pooling` with a `name` and a `pool` method, then adding `conf/pooling/<name>.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file

from embedexp.core.atomic import atomic_file
from embedexp.core.errors import ConfigError, unknown_name

POOLING_WEIGHTS = "pooling.safetensors"

POOLINGS: dict[str, type[Pooling]] = {}


class Pooling(torch.nn.Module):
    """Base pooling: picks the token mask (all tokens, or the text tokens only) and reduces hidden states."""

    name: ClassVar[str] = ""
    needs_attention: ClassVar[bool] = False
    # constructor arguments recorded in export manifests (the pooling is rebuilt from them)
    option_names: ClassVar[tuple[str, ...]] = ("exclude_prompt",)

    def __init__(self, exclude_prompt: bool = False) -> None:
        """`exclude_prompt`: pool over the tokens of the text only, not the prompt around it."""
        super().__init__()
        self.exclude_prompt = exclude_prompt

    def __init_subclass__(cls, **kwargs) -> None:
        """Register every named subclass under its name."""
        super().__init_subclass__(**kwargs)
        if cls.name:
            POOLINGS[cls.name] = cls

    def forward(
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

    def options(self) -> dict:
        """Constructor arguments that rebuild this pooling (tuples as lists, for JSON manifests)."""
        values = {key: getattr(self, key) for key in self.option_names}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    @property
    def has_weights(self) -> bool:
        """Whether the pooling carries parameters (saved with the adapter and in exports)."""
        return any(True for _ in self.parameters())

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
    computed by `embedexp.analysis.attention`. The first pooled token (the attention sink) is skipped unless
    `keep_sink` is set.
    """

    name = "attention"
    needs_attention = True
    option_names = ("exclude_prompt", "layers", "keep_sink")

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


class LatentAttentionPooling(Pooling):
    """NV-Embed latent-attention pooling (Lee et al. 2024): token states attend to a trainable latent array.

    Multi-head cross-attention with the token hidden states as queries and `num_latents` learned vectors as keys and
    values, then a GELU MLP, each pre-normalised with a residual connection (as NV-Embed's `LatentAttentionModel`);
    the result is averaged over the selected tokens. With `zero_init` both output projections start at zero, so the
    untrained pooling is exactly mean pooling (as LoRA starts at the base model): zero-shot scores are mean pooling's.
    """

    name = "latent_attention"
    option_names = ("exclude_prompt", "hidden_size", "num_latents", "num_heads", "mlp_ratio", "zero_init")

    def __init__(
        self,
        exclude_prompt: bool = False,
        hidden_size: int | None = None,
        num_latents: int = 512,
        num_heads: int = 8,
        mlp_ratio: int = 4,
        zero_init: bool = True,
    ) -> None:
        """`hidden_size`: the decoder's (null in the config: `build_embedder` fills in the backbone's)."""
        super().__init__(exclude_prompt)
        if not hidden_size:
            raise ConfigError("pooling.hidden_size: latent_attention needs the decoder's hidden size (set or null)")
        if hidden_size % num_heads:
            raise ConfigError(f"pooling.num_heads={num_heads} must divide the hidden size {hidden_size}")
        if num_latents < 1 or mlp_ratio < 1:
            raise ConfigError(f"pooling.num_latents={num_latents} and pooling.mlp_ratio={mlp_ratio} must be >= 1")
        self.hidden_size, self.num_latents, self.num_heads = int(hidden_size), int(num_latents), int(num_heads)
        self.mlp_ratio, self.zero_init = int(mlp_ratio), bool(zero_init)
        size = self.hidden_size
        self.latents = torch.nn.Parameter(torch.randn(self.num_latents, size))
        self.norm_queries, self.norm_latents = torch.nn.LayerNorm(size), torch.nn.LayerNorm(size)
        self.cross_attention = torch.nn.MultiheadAttention(size, self.num_heads, batch_first=True)
        self.norm_mlp = torch.nn.LayerNorm(size)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(size, self.mlp_ratio * size), torch.nn.GELU(), torch.nn.Linear(self.mlp_ratio * size, size)
        )
        if self.zero_init:
            for layer in (self.cross_attention.out_proj, self.mlp[2]):
                torch.nn.init.zeros_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    def pool(self, hidden, mask, attention=None):
        """Cross-attend to the latents, MLP, masked mean."""
        latents = self.norm_latents(self.latents).unsqueeze(0).expand(hidden.shape[0], -1, -1)
        attended, _ = self.cross_attention(self.norm_queries(hidden), latents, latents, need_weights=False)
        states = hidden + attended
        states = states + self.mlp(self.norm_mlp(states))
        return weighted_average(states.float(), mask)

    def __repr__(self) -> str:
        """Readable name with options."""
        return f"LatentAttentionPooling({', '.join(f'{k}={v}' for k, v in self.options().items())})"


def save_pooling_weights(pooling: Pooling, folder: str | Path) -> Path | None:
    """Write a pooling's weights to `<folder>/pooling.safetensors` atomically (nothing for poolings without any)."""
    if not pooling.has_weights:
        return None
    path = Path(folder) / POOLING_WEIGHTS
    state = {key: value.detach().cpu().contiguous() for key, value in pooling.state_dict().items()}
    with atomic_file(path) as staging:
        save_file(state, str(staging), metadata={"pooling": type(pooling).__name__})
    return path


def load_pooling_weights(pooling: Pooling, folder: str | Path) -> None:
    """Load `<folder>/pooling.safetensors` into a pooling with weights; missing or mismatching files are errors."""
    if not pooling.has_weights:
        return
    path = Path(folder) / POOLING_WEIGHTS
    if not path.is_file():
        raise ConfigError(f"{folder}: no {POOLING_WEIGHTS}, but pooling '{pooling.name}' has trained weights")
    try:
        pooling.load_state_dict(load_file(str(path)))
    except Exception as err:  # wrong shapes or keys (another pooling config), corrupt file
        raise ConfigError(f"{path}: does not fit pooling {pooling!r}: {err}") from err


def pooled_dim(pooling: Pooling, hidden: int) -> int:
    """Output size of a pooling over `hidden`-sized states (probed with a two-token input)."""
    states = torch.zeros(1, 2, hidden)
    mask = torch.ones(1, 2, dtype=torch.long)
    attention = torch.full((1, 2), 0.5) if pooling.needs_attention else None
    with torch.no_grad():
        return int(pooling(states, mask, mask, attention).shape[-1])


def build_pooling(name: str, **options) -> Pooling:
    """Instantiate a registered pooling by name; unknown names list the valid ones."""
    if name not in POOLINGS:
        raise unknown_name("pooling", name, list(POOLINGS))
    return POOLINGS[name](**options)
