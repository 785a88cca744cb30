"""Capture where the final token looks: its attention over all input tokens, per decoder layer.

Shared by the `final_token_attention` pooling and the attention-map analysis (through `Embedder.run`), so both read the
same numbers.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from embedexp.core.compat import attn_implementation
from embedexp.core.errors import ConfigError
from embedexp.model.pooling import last_index

ATTENTION_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.self_attn$")


def attention_modules_by_layer(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """Map decoder layer index to its self-attention module."""
    found = {}
    for name, module in model.named_modules():
        match = ATTENTION_MODULE.search(name)
        if match:
            found[int(match.group(1))] = module
    if not found:
        raise ValueError(f"no `layers.<i>.self_attn` modules found in {type(model).__name__}")
    return found


def uses_eager_attention(model: torch.nn.Module) -> bool:
    """Whether the model computes explicit attention weights (needed to read them)."""
    return attn_implementation(model) == "eager"


@contextmanager
def final_token_attention(model: torch.nn.Module, attention_mask: torch.Tensor, layers: tuple[int, ...] | None = None):
    """Within the block, a forward pass fills the yielded dict {layer: [B, heads, T]} with the last token's attention.

    The last token is the last non-pad position of each row, so left and right padding give the same numbers.
    The model must use eager attention (`attn_implementation: eager`).
    """
    if not uses_eager_attention(model):
        raise ValueError("reading attention weights needs model.backbone.attn_implementation=eager")
    modules = attention_modules_by_layer(model)
    n_layers = len(modules)
    if layers is not None and any(not -n_layers <= layer < n_layers for layer in layers):
        raise ConfigError(f"layers={list(layers)}: this model has {n_layers} decoder layers (0..{n_layers - 1})")
    wanted = sorted({(layer % n_layers) for layer in layers}) if layers is not None else sorted(modules)
    rows = torch.arange(attention_mask.shape[0])
    last = last_index(attention_mask.bool())
    captured: dict[int, torch.Tensor] = {}

    def hook_for(layer: int):
        def hook(_module, _inputs, outputs):
            weights = outputs[1]
            if weights is None:
                raise ValueError(f"layer {layer} returned no attention weights; is attention eager?")
            captured[layer] = weights[rows.to(weights.device), :, last.to(weights.device), :].float()

        return hook

    handles = [modules[layer].register_forward_hook(hook_for(layer)) for layer in wanted]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class FinalTokenAttention:
    """The last token's attention over the input tokens: `weights` [B, L, H, T] for decoder `layers` (in order)."""

    layers: tuple[int, ...]
    weights: torch.Tensor

    @classmethod
    def from_captured(cls, captured: dict[int, torch.Tensor]) -> FinalTokenAttention:
        """Stack the {layer: [B, H, T]} dict filled by `final_token_attention` in layer order."""
        if not captured:
            raise ValueError("no attention weights were captured; did the forward pass run inside the block?")
        layers = tuple(sorted(captured))
        return cls(layers, torch.stack([captured[layer] for layer in layers], dim=1))

    def pooled(self) -> torch.Tensor:
        """[B, T]: attention averaged over heads and layers (the weights of the `final_token_attention` pooling)."""
        return self.weights.mean(dim=(1, 2))
