"""LoRA adapters through peft, with checks that name the config key when targets are wrong."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from embedexp.core.errors import ConfigError

LAYER_PATTERN = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def num_decoder_layers(model: torch.nn.Module) -> int:
    """Number of decoder blocks (`...layers.<i>...` modules) in the model."""
    indices = {int(m.group(1)) for name, _ in model.named_modules() if (m := LAYER_PATTERN.search(name + "."))}
    return max(indices) + 1 if indices else 0


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Short names of all linear layers (the valid LoRA targets)."""
    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)})


def apply_lora(
    model: torch.nn.Module,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    last_n_layers: int | None = None,
    top_layer: int | None = None,
) -> PeftModel:
    """Wrap `model` with LoRA adapters on `target_modules`, optionally only in the last N decoder layers below and at
    `top_layer` (default the last layer; an intermediate one when the pooling reads that layer: `pooling.layer`)."""
    targets = list(target_modules)
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(
            f"model.lora.target_modules: {missing} not found in the model; linear modules are: {', '.join(available)}"
        )
    layers = None
    total = num_decoder_layers(model)
    top = total - 1 if top_layer is None else top_layer
    if last_n_layers or top < total - 1:
        count = last_n_layers or top + 1
        if not 0 < count <= top + 1:
            raise ConfigError(f"model.lora.last_n_layers={last_n_layers} must be in 1..{top + 1} for layers 0..{top}")
        layers = list(range(top + 1 - count, top + 1))
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        layers_to_transform=layers,
        layers_pattern="layers" if layers else None,
        bias="none",
    )
    return get_peft_model(model, config)


def load_adapter(
    model: torch.nn.Module, adapter_path: str, trainable: bool = False, config_key: str = "adapter_path"
) -> PeftModel:
    """Attach a saved LoRA adapter folder to a base model; a missing or broken folder is a clear error."""
    if not (Path(adapter_path) / "adapter_config.json").is_file():
        raise ConfigError(f"{config_key}={adapter_path!r}: no adapter_config.json there (not a saved LoRA adapter)")
    try:
        return PeftModel.from_pretrained(model, adapter_path, is_trainable=trainable)
    except Exception as err:  # corrupt weights or config: peft/safetensors raise many types
        raise ConfigError(f"{config_key}={adapter_path!r}: cannot load LoRA adapter: {err}") from err
