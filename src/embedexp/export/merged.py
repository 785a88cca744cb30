"""The merged model: LoRA weights folded into the base decoder, saved as a plain transformers model."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open

from embedexp.core.errors import ConfigError
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import POOLING_FOLDER, Pooling

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA weights into the base layers and drop the peft wrapper (models without LoRA pass through)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def up_to_pooled_layer(model: torch.nn.Module, pooling: Pooling) -> torch.nn.Module:
    """A merged decoder whose last layer is the one the pooling reads (`pooling.layer`): the layers above it are
    dropped, so a plain transformers or sentence-transformers load computes the pooled states and nothing more."""
    n_layers = len(model.layers)
    if pooling.layer == n_layers - 1 and pooling.layer_norm:
        return model
    if not pooling.layer_norm:
        raise ConfigError(
            "pooling.layer_norm=false: a plain transformers model always ends with its final norm, so this pooling "
            "cannot be exported as a merged or sentence-transformers folder (the adapter form keeps it)"
        )
    model.layers = torch.nn.ModuleList(list(model.layers)[: pooling.layer + 1])
    model.config.num_hidden_layers = pooling.layer + 1
    for attribute in ("layer_types",):  # per-layer config lists (Gemma 3's sliding / full attention) shrink too
        if isinstance(getattr(model.config, attribute, None), list):
            setattr(model.config, attribute, getattr(model.config, attribute)[: pooling.layer + 1])
    return model


def write_merged(embedder: Embedder, folder: Path) -> dict:
    """Save a merged base decoder, its tokenizer and the pooling (`pooling/`); assert that no adapter file or LoRA
    weight is left."""
    model = embedder.model
    if isinstance(model, PeftModel):
        raise TypeError("write_merged needs a merged model (call merge_lora first)")
    model.save_pretrained(str(folder), safe_serialization=True)
    embedder.tokenizer.save_pretrained(str(folder))
    embedder.pooling.save(str(folder / POOLING_FOLDER))
    for name in ADAPTER_FILES:
        (folder / name).unlink(missing_ok=True)
    for weights in folder.rglob("*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            lora = [key for key in handle.keys() if "lora_" in key]
        if lora:
            raise RuntimeError(f"merged export still holds LoRA weights in {weights.name}: {lora[:3]}")
    return {}
