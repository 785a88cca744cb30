"""Poolings: (hidden states, attention mask, text mask[, final-token attention]) to one vector.

A pooling is one `Pooling` subclass and one YAML (`_target_` and its options). Its options are its constructor's
arguments, kept as attributes of the same names: they are its `config_keys` (found from the signature, nothing to list
by hand), saved with `save(folder)` as `config.json` beside its weights (`model.safetensors`, for poolings with
trainable weights such as `latent_attention`) and rebuilt by `load(folder)`. A pooling is a sentence-transformers
module, so the same object pools in training (`pool_tokens`) and inside an exported `SentenceTransformer`
(`forward(features)`), whose `modules.json` names its class.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from sentence_transformers.base.modules.module import Module

from embedexp.core.errors import ConfigError
from embedexp.core.renamed import RENAMED_CLASSES

POOLING_FOLDER = "pooling"  # a pooling's subfolder in adapter and merged folders (sentence-transformers: 1_<Class>)
TEXT_MASK = "text_mask"  # feature: 1 for the tokens of the (pooled copy of the) text, 0 for prompt and padding
FINAL_ATTENTION = "final_token_attention"  # feature: [B, T] attention of the last token (poolings that need it)


def constructor_options(cls: type) -> list[str]:
    """Names of the keyword arguments of `cls.__init__`; with `**options` (passed on), the parent's options too."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [parameter.name for parameter in parameters if parameter.kind in kinds]
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        names += [name for name in getattr(cls.__mro__[1], "config_keys", []) if name not in names]
    return names


def class_path(obj: Any) -> str:
    """`module.QualifiedName` of an object's class (what sentence-transformers records in modules.json)."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _plain(value: Any) -> Any:
    """A JSON value: tuples as lists."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


class Pooling(Module):
    """Base pooling: picks the token mask (all tokens, or the text tokens only) and reduces hidden states."""

    config_keys: ClassVar[list[str]] = ["exclude_prompt", "layer", "layer_norm"]
    renamed_keys: ClassVar[dict[str, str]] = {}  # old config.json key -> its constructor option now
    needs_attention: ClassVar[bool] = False

    def __init__(self, exclude_prompt: bool = False, layer: int = -1, layer_norm: bool = True) -> None:
        """`exclude_prompt`: pool over the tokens of the text only, not the prompt around it; `layer`: the decoder
        layer whose output is pooled (-1: the last; negative counts from the end; `build_embedder` stores the
        absolute index); `layer_norm`: apply the decoder's final norm to it (as the last layer's output gets)."""
        super().__init__()
        self.exclude_prompt = exclude_prompt
        self.layer, self.layer_norm = int(layer), bool(layer_norm)
        self.embedding_dimension: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's `config_keys` are its constructor's arguments unless it lists them itself."""
        super().__init_subclass__(**kwargs)
        if "config_keys" not in cls.__dict__:
            cls.config_keys = constructor_options(cls)

    def get_config_dict(self) -> dict[str, Any]:
        """The constructor options that rebuild this pooling (JSON values); each must be kept as an attribute."""
        missing = [key for key in self.config_keys if not hasattr(self, key)]
        if missing:
            raise ConfigError(
                f"{class_path(self)}: constructor option(s) {missing} are not kept as attributes of the same name "
                f"(self.{missing[0]} = {missing[0]}), so the pooling cannot be saved, exported or cached faithfully"
            )
        return {key: _plain(getattr(self, key)) for key in self.config_keys}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """sentence-transformers: pool `token_embeddings` into `sentence_embedding`."""
        features["sentence_embedding"] = self.pool_tokens(
            features["token_embeddings"],
            features["attention_mask"],
            features.get(TEXT_MASK),
            features.get(FINAL_ATTENTION),
        )
        return features

    def pool_tokens(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pool `hidden` [B, T, H] to [B, D] over the selected tokens (float32)."""
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
        """Reduce [B, T, H] hidden states over the True positions of `mask` to [B, D]."""
        raise NotImplementedError

    @property
    def has_weights(self) -> bool:
        """Whether the pooling carries parameters (saved beside its config)."""
        return any(True for _ in self.parameters())

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write `config.json` (the constructor options) and, for poolings with weights, `model.safetensors`."""
        Path(output_path).mkdir(parents=True, exist_ok=True)
        self.save_config(output_path)
        if self.has_weights:
            self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> Pooling:
        """Rebuild the pooling from its `config.json`, then load its weights if it has any."""
        hub = {key: kwargs[key] for key in ("token", "cache_folder", "revision", "local_files_only") if key in kwargs}
        if cls.load_file_path(model_name_or_path, cls.config_file_name, subfolder=subfolder, **hub) is None:
            where = Path(model_name_or_path, subfolder)  # defaults would silently give another pooling
            raise ConfigError(f"{where}: no {cls.config_file_name}; not a pooling folder written by Pooling.save")
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        config = {cls.renamed_keys.get(key, key): value for key, value in config.items()}
        try:
            pooling = cls(**config)
        except TypeError as err:
            where = Path(model_name_or_path, subfolder, cls.config_file_name)
            raise ConfigError(f"{where}: does not fit {cls.__module__}.{cls.__qualname__}: {err}") from err
        pooling.load_weights(model_name_or_path, subfolder, **hub)
        return pooling

    def load_weights(self, model_name_or_path: str, subfolder: str = "", **hub: Any) -> None:
        """Load the saved weights of a pooling that has any; a missing or mismatching file is a ConfigError."""
        if not self.has_weights:
            return
        try:
            self.load_torch_weights(model_name_or_path, subfolder=subfolder, model=self, **hub)
        except (OSError, ValueError, RuntimeError) as err:  # no file, other shapes or keys, a corrupt file
            where = Path(model_name_or_path, subfolder)
            raise ConfigError(f"{where}: no weights that fit pooling {self!r}: {err}") from err

    def on_model_ready(self, model: torch.nn.Module) -> None:
        """In a SentenceTransformer: probe the output size from the size of the module before this one."""
        modules = list(model.children())
        before = modules[modules.index(self) - 1] if self in modules and modules.index(self) > 0 else None
        size = getattr(before, "get_embedding_dimension", lambda: None)()
        self.embedding_dimension = pooled_dim(self, int(size)) if size else None

    def get_embedding_dimension(self) -> int | None:
        """Size of the pooled vector inside a SentenceTransformer (None until it is known)."""
        return self.embedding_dimension


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

    def pool(self, hidden, mask, attention=None):
        """Masked mean."""
        return weighted_average(hidden, mask)


class LastTokenPooling(Pooling):
    """State of the last selected token (the EOS / final prompt token for decoders)."""

    def pool(self, hidden, mask, attention=None):
        """Gather the last non-pad position of each row."""
        return last_token(hidden, mask)


class WeightedMeanPooling(Pooling):
    """SGPT position-weighted mean: the i-th selected token gets weight i (later tokens saw more context)."""

    def pool(self, hidden, mask, attention=None):
        """Linearly increasing weights over the selected tokens."""
        return weighted_average(hidden, mask.cumsum(dim=1) * mask)


class MaxPooling(Pooling):
    """Element-wise maximum over the selected token states."""

    def pool(self, hidden, mask, attention=None):
        """Masked max."""
        return hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).max(dim=1).values


class ConcatPooling(Pooling):
    """Last-token state concatenated with the mean (twice the hidden size)."""

    def pool(self, hidden, mask, attention=None):
        """[last ; mean]."""
        return torch.cat([last_token(hidden, mask), weighted_average(hidden, mask)], dim=-1)


class FinalTokenAttentionPooling(Pooling):
    """Semantic-aware aggregation: token states weighted by the final token's attention to them.

    `attention` is [B, T]: the last token's attention over input tokens (mean over heads of `attention_layers`),
    computed by `embedexp.analysis.attention_maps`. The first pooled token (the attention sink) is skipped unless
    `keep_sink` is set.
    """

    needs_attention = True
    renamed_keys: ClassVar[dict[str, str]] = {"layers": "attention_layers"}  # folders saved before the rename

    def __init__(
        self,
        exclude_prompt: bool = False,
        attention_layers: tuple[int, ...] = (-1,),
        keep_sink: bool = False,
        layer: int = -1,
        layer_norm: bool = True,
    ) -> None:
        """`attention_layers`: decoder layers whose final-token attention gives the weights (averaged); `layer`, as
        for every pooling, the one whose output is pooled."""
        super().__init__(exclude_prompt, layer, layer_norm)
        self.attention_layers = tuple(int(index) for index in attention_layers)
        self.keep_sink = keep_sink

    def pool(self, hidden, mask, attention=None):
        """Attention-weighted mean of the selected tokens."""
        if attention is None:
            raise ValueError("final_token_attention pooling needs the final token's attention weights")
        weights = attention.float() * mask
        if not self.keep_sink:
            first = mask.float().argmax(dim=1)
            sink = torch.zeros_like(mask).scatter_(1, first.unsqueeze(1), True)
            has_more = mask.sum(dim=1, keepdim=True) > 1
            weights = weights.masked_fill(sink & has_more, 0.0)
        # rows whose weights vanished (e.g. all attention on the sink) fall back to the mean
        weights = torch.where(weights.sum(dim=1, keepdim=True) > 0, weights, mask.float())
        return weighted_average(hidden, weights)


class LatentAttentionPooling(Pooling):
    """NV-Embed latent-attention pooling (Lee et al. 2024): token states attend to a trainable latent array.

    Multi-head cross-attention with the token hidden states as queries and `num_latents` learned vectors as keys and
    values, then a GELU MLP, each pre-normalised with a residual connection (as NV-Embed's `LatentAttentionModel`);
    the result is averaged over the selected tokens. With `zero_init` both output projections start at zero, so the
    untrained pooling is exactly mean pooling (as LoRA starts at the base model): zero-shot scores are mean pooling's.
    """

    def __init__(
        self,
        exclude_prompt: bool = False,
        hidden_size: int | None = None,
        num_latents: int = 512,
        num_heads: int = 8,
        mlp_ratio: int = 4,
        zero_init: bool = True,
        layer: int = -1,
        layer_norm: bool = True,
    ) -> None:
        """`hidden_size`: the decoder's (null in the config: `build_embedder` fills in the backbone's)."""
        super().__init__(exclude_prompt, layer, layer_norm)
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


def pooled_dim(pooling: Pooling, hidden: int) -> int:
    """Output size of a pooling over `hidden`-sized states (probed with a two-token input on its device)."""
    device = next(pooling.parameters(), torch.empty(0)).device
    states = torch.zeros(1, 2, hidden, device=device)
    mask = torch.ones(1, 2, dtype=torch.long, device=device)
    attention = torch.full((1, 2), 0.5, device=device) if pooling.needs_attention else None
    with torch.no_grad():
        return int(pooling.pool_tokens(states, mask, mask, attention).shape[-1])


def pooled_layer(pooling: Pooling, n_layers: int) -> int:
    """The absolute index of the decoder layer a pooling reads (its `layer`, negative counting from the end)."""
    index = pooling.layer if pooling.layer >= 0 else n_layers + pooling.layer
    if not 0 <= index < n_layers:
        layers = f"0..{n_layers - 1} (or -1..-{n_layers})"
        raise ConfigError(f"pooling.layer={pooling.layer}: this decoder has layers {layers}")
    return index


def __getattr__(name: str) -> Any:
    """A pooling class under the name it was saved with (a manifest's `target`, an export's `modules.json`, a pooling
    YAML's `_target_`): `AttentionPooling` is `FinalTokenAttentionPooling` (embedexp.core.renamed)."""
    new = RENAMED_CLASSES.get(f"{__name__}.{name}")
    if new is None or not new.startswith(f"{__name__}."):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals()[new.rsplit(".", 1)[1]]
