"""The merged model: LoRA weights folded into the base decoder, saved as a plain transformers model."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open

from embedexp.model.embedder import Embedder
from embedexp.model.pooling import POOLING_FOLDER

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA weights into the base layers and drop the peft wrapper (models without LoRA pass through)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


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
