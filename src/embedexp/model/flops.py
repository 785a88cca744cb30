"""Model FLOPs of embedding and training passes, counted from the decoder's own modules (for MFU).

Counted: every matmul of the decoder layers, 2 FLOPs per multiply-add. Per token and layer, the linear layers cost
2 x their weights (LoRA's A and B included); attention costs 4 x (heads x head_dim) per (query, key) pair a text
needs: L(L+1)/2 pairs for a causal text of L tokens, L^2 for a bidirectional one (no padding, no masked pairs). Not
counted: the embedding lookup (no matmul), norms, activations and the pooling (elementwise), the LM head (never run).

A training step runs the forward pass over every layer and the backward pass only from the first adapted layer on:
there, the frozen linear layers need input gradients only (1 x their forward FLOPs), attention 2 x, and the LoRA
matrices input and weight gradients (2 x). Layers below the first adapted one have nothing to train and get no
backward pass. Recomputation (GradCache's second forward) is not counted: this is model FLOPs, not hardware FLOPs.
Frozen layers whose outputs the frozen-prefix cache served (`training_step(prefix_cached=...)`) did not run and are
not counted either: their work is reported apart, as `throughput/cached_share`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

LAYER_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class FlopCounter:
    """Per decoder layer: frozen and trained linear weights (LoRA's A and B, or unfrozen layers); the attention
    width; the first layer with trained weights (where the backward pass starts)."""

    frozen_params: tuple[int, ...]
    trained_params: tuple[int, ...]
    attention_width: int
    first_adapted: int
    causal: bool = True

    @classmethod
    def of(cls, model: torch.nn.Module) -> FlopCounter:
        """Count a decoder (or its peft wrapper) as it is now: which weights exist and which train."""
        decoder = model.get_base_model() if hasattr(model, "get_base_model") else model
        n_layers = len(decoder.layers)
        frozen, trained = [0] * n_layers, [0] * n_layers
        first_adapted = n_layers
        for name, module in decoder.named_modules():
            match = LAYER_INDEX.search(name + ".")
            if match is None or not isinstance(module, torch.nn.Linear):
                continue
            layer = int(match.group(1))
            if module.weight.requires_grad:
                trained[layer] += module.weight.numel()
                first_adapted = min(first_adapted, layer)
            else:
                frozen[layer] += module.weight.numel()
        config = decoder.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        causal = getattr(config, "is_causal", True) is not False
        return cls(tuple(frozen), tuple(trained), head_dim * config.num_attention_heads, first_adapted, causal)

    def pairs(self, lengths: Sequence[int]) -> int:
        """(query, key) pairs the texts' attention needs."""
        return sum(n * (n + 1) // 2 if self.causal else n * n for n in lengths)

    def forward(self, lengths: Sequence[int], from_layer: int = 0) -> float:
        """FLOPs of a forward pass over texts of these token lengths, through layers `from_layer`.."""
        tokens, pairs = sum(lengths), self.pairs(lengths)
        weights = sum(self.frozen_params[from_layer:]) + sum(self.trained_params[from_layer:])
        layers = len(self.frozen_params) - from_layer
        return 2.0 * weights * tokens + 4.0 * self.attention_width * pairs * layers

    def backward(self, lengths: Sequence[int]) -> float:
        """FLOPs of the backward pass (input gradients of frozen weights, both gradients of trained ones, attention)."""
        tokens, pairs = sum(lengths), self.pairs(lengths)
        start = self.first_adapted
        frozen, trained = sum(self.frozen_params[start:]), sum(self.trained_params[start:])
        layers = len(self.frozen_params) - start
        return 2.0 * frozen * tokens + 4.0 * trained * tokens + 8.0 * self.attention_width * pairs * layers

    def training_step(self, lengths: Sequence[int], prefix_cached: float = 0.0) -> float:
        """FLOPs of one training step as computed; `prefix_cached`: share of its texts whose frozen layers (those
        below `first_adapted`) an earlier step computed and the frozen-prefix cache served: not run, not counted."""
        full = self.forward(lengths)
        tail = self.forward(lengths, from_layer=self.first_adapted)
        return (1 - prefix_cached) * full + prefix_cached * tail + self.backward(lengths)
