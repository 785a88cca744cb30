"""Bidirectional attention (LLM2Vec, NV-Embed, GritLM): a decoder's causal mask replaced by a padding-only mask.

transformers (>= 5) supports this through the config: with `config.is_causal=False`, `masking_utils.create_causal_mask`
/ `create_sliding_window_causal_mask` build the padding-only mask (for sliding layers, a window on both sides), and
the model's forward passes `is_causal=False` down to SDPA, which skips the mask when nothing is padded. The attention
modules' own `is_causal` flags are switched as well (SDPA's fallback when no kwarg arrives). The config attribute is
saved in `config.json`, the module flags are not: embedexp's loaders call `set_attention_mode` again on reload.
"""

from __future__ import annotations

import torch

from embedexp.core.compat import causal_flag_modules, set_causal_flags
from embedexp.core.errors import ConfigError

ATTENTION_MODES = ("causal", "bidirectional")
# architectures whose attention modules read `is_causal` and whose masks come from `masking_utils` (transformers 5)
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The bare decoder inside an optional peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention modules of the decoder layers (those with an `is_causal` flag)."""
    return causal_flag_modules(_decoder(model))


def attention_mode(model: torch.nn.Module) -> str:
    """`causal` or `bidirectional`, as the model is set now."""
    return "causal" if getattr(_decoder(model).config, "is_causal", True) else "bidirectional"


def set_attention_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Switch a decoder (or its peft wrapper) to causal or bidirectional attention, in place; returns it."""
    if mode not in ATTENTION_MODES:
        raise ConfigError(f"model.attention_mode={mode!r} must be one of {list(ATTENTION_MODES)}")
    config = _decoder(model).config
    if mode == attention_mode(model) == "causal":
        return model  # the architecture's own default: nothing to patch
    model_type = getattr(config, "model_type", type(model).__name__)
    modules = attention_modules(model)
    if model_type not in SUPPORTED_MODEL_TYPES or not modules:
        raise ConfigError(
            f"model.attention_mode={mode}: cannot switch the attention of model type {model_type!r}; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    causal = mode == "causal"
    config.is_causal = causal
    set_causal_flags(modules, causal)
    return model
