"""The manifest of a saved model: how it embeds (pooling, prompt, base model, adapted layers, attention mode, max
length) and how it was computed (precisions), in one JSON file beside the weights (`embedexp_manifest.json`).

Every saved form writes it: a training run's `adapter/`, its checkpoints (under the key `embedexp_manifest`) and each
export. `embedexp.export.resolve` reads it, so a saved model is rebuilt as it was trained, whatever today's config says.
The base model's identity is its backbone spec (`_target_` and arguments), revision, and a hash of its weights (rounded
to bfloat16 first, so a run that held its frozen weights in bf16 hashes as one that kept float32).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel

from embedexp import __version__
from embedexp.core.compat import attn_implementation
from embedexp.core.config import hydra_choices
from embedexp.core.errors import ConfigError
from embedexp.core.renamed import upgrade_manifest
from embedexp.model.bidirectional import attention_mode
from embedexp.model.embedder import Embedder
from embedexp.model.lora import LAYER_PATTERN, num_decoder_layers
from embedexp.model.pooling import POOLING_FOLDER, Pooling, class_path
from embedexp.model.prompts import PromptTemplate

log = logging.getLogger(__name__)

MANIFEST = "embedexp_manifest.json"
LEGACY_MANIFESTS = ("embedexp_export.json",)  # exports written before every saved model had a manifest
CHECKPOINT_KEY = "embedexp_manifest"  # a Lightning checkpoint's copy of the manifest
MANIFEST_VERSION = 1
# backbone arguments that say where or how a model is loaded, not which model it is
LOADING_KEYS = ("cache_dir", "attn_implementation", "dtype", "trust_remote_code")


def pooling_record(pooling: Pooling) -> dict[str, Any]:
    """What a manifest says about the pooling: its class and constructor options (weights are in `pooling/`)."""
    return {"target": class_path(pooling), "config": pooling.get_config_dict(), "folder": POOLING_FOLDER}


def prompt_record(prompt: PromptTemplate) -> dict[str, Any]:
    """What a manifest says about the prompt: its class and constructor fields (name, template, ...)."""
    return {"target": class_path(prompt), **{f.name: getattr(prompt, f.name) for f in fields(prompt) if f.init}}


def backbone_identity(backbone: dict[str, Any], init_adapter: str | None = None) -> dict[str, Any]:
    """The backbone spec without its loading options: equal for the same base model on any machine."""
    identity = {k: v for k, v in backbone.items() if k not in LOADING_KEYS}
    return {**identity, "init_adapter": init_adapter} if init_adapter else identity


def base_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base decoder's weights by their plain names: LoRA weights left out, peft's wrapping names undone."""
    weights = {}
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        plain = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        weights[plain] = param
    return weights


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 (first 16 hex digits) of the base weights rounded to bfloat16, in name order."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in sorted(base_weights(model).items()):
            digest.update(f"{name}:{tuple(param.shape)};".encode())
            digest.update(param.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def adapted_layers(model: torch.nn.Module) -> list[int]:
    """Indices of the decoder layers that hold LoRA weights (empty without an adapter)."""
    return sorted(
        {int(m.group(1)) for name, _ in model.named_modules() if "lora_A" in name and (m := LAYER_PATTERN.search(name))}
    )


def frozen_dtype_name(model: torch.nn.Module) -> str:
    """The dtype the frozen base weights are held in (`float32`, `bfloat16`)."""
    for param in base_weights(model).values():
        if param.is_floating_point():
            return str(param.dtype).removeprefix("torch.")
    return "float32"


def container(value: Any) -> Any:
    """A resolved plain value of a config node (or the value itself)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def model_manifest(cfg: DictConfig, embedder: Embedder, precisions: dict[str, str] | None = None) -> dict[str, Any]:
    """The manifest of a freshly built embedder, from its config; `complete` adds what needs its weights."""
    backbone = container(cfg.model.backbone)
    model = embedder.model
    return {
        "manifest_version": MANIFEST_VERSION,
        "embedexp_version": __version__,
        "base_model": {
            "name": embedder.name,
            "revision": backbone.get("revision"),
            "weights_hash": None,
            "n_layers": num_decoder_layers(model),
            "hidden_size": int(model.config.hidden_size),
        },
        "backbone": backbone,
        "init_adapter": cfg.model.get("init_adapter"),
        "lora": container(cfg.model.get("lora")),
        "attention_mode": attention_mode(model),
        "attn_implementation": attn_implementation(model),
        "prompt": prompt_record(embedder.prompt),
        "pooling": pooling_record(embedder.pooling),
        "max_length": int(embedder.max_length),
        "padding_side": embedder.padding_side,
        "packed": bool(embedder.packed),
        "precision": dict(precisions or {}),
        "choices": {k: v for k, v in hydra_choices().items() if k in ("model", "pooling", "prompt")},
    }


def complete(embedder: Embedder) -> dict[str, Any]:
    """The embedder's manifest with its weights' facts filled in (hash computed once: the base is frozen)."""
    manifest = getattr(embedder, "manifest", None)
    if manifest is None:
        raise ConfigError("this embedder was not built by build_embedder, so nothing records how it embeds")
    base = manifest["base_model"]
    if not base.get("weights_hash"):
        base["weights_hash"] = weights_hash(embedder.model)
    manifest["adapted_layers"] = adapted_layers(embedder.model)
    manifest["precision"] = {**manifest.get("precision", {}), "frozen_weights": frozen_dtype_name(embedder.model)}
    manifest["pooling"] = pooling_record(embedder.pooling)  # the absolute layer, options as they are now
    return manifest


def manifest_path(folder: str | Path) -> Path | None:
    """The manifest file of a folder (the legacy export name too), or None."""
    for name in (MANIFEST, *LEGACY_MANIFESTS):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest saved in `folder` (old names read as today's), or None for a folder saved without one."""
    path = manifest_path(folder)
    return upgrade_manifest(json.loads(path.read_text(encoding="utf-8"))) if path else None


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write `<folder>/embedexp_manifest.json` (callers write into staging folders: no atomic rename needed)."""
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def save_adapter(embedder: Embedder, folder: str | Path) -> dict[str, Any]:
    """Save what `embedexp.export.resolve.open_model` reopens: the peft adapter, the tokenizer, the pooling (its
    config and any weights, in `pooling/`) and the manifest; returns the manifest."""
    if not isinstance(embedder.model, PeftModel):
        raise ConfigError("an adapter folder needs a LoRA model (model.lora set); this model has no adapter")
    embedder.model.save_pretrained(str(folder))
    embedder.tokenizer.save_pretrained(str(folder))
    embedder.pooling.save(str(Path(folder) / POOLING_FOLDER))
    manifest = complete(embedder)
    write_manifest(folder, manifest)
    return manifest
