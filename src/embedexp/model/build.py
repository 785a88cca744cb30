"""Build the run's parts from the composed Hydra config."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from embedexp.core.compat import attn_implementation
from embedexp.core.errors import ConfigError
from embedexp.core.hardware import frozen_weights_dtype
from embedexp.model.backbone import Backbone, compile_decoder_layers, hold_frozen_weights_in
from embedexp.model.bidirectional import set_attention_mode
from embedexp.model.embedder import Embedder
from embedexp.model.lora import apply_lora, load_adapter, num_decoder_layers
from embedexp.model.manifest import model_manifest
from embedexp.model.packing import packed_name, set_attention_groups, use_packed_attention
from embedexp.model.pooling import POOLING_FOLDER, Pooling, pooled_layer
from embedexp.model.prompts import PromptTemplate

log = logging.getLogger(__name__)


def build_embedder(
    cfg: DictConfig,
    adapter_path: str | None = None,
    trainable: bool = True,
    new_lora: bool = True,
    eager_attention: bool = False,
    precisions: dict[str, str] | None = None,
    packed: bool | None = None,
    frozen_dtype: torch.dtype | None = None,
) -> Embedder:
    """Backbone + LoRA (loaded from `adapter_path`, or new from `model.lora` if `new_lora`) + prompt + pooling.

    `eager_attention` switches the backbone to eager attention so attention weights can be read (the
    `final_token_attention` pooling does so by itself). `precisions`: the run's resolved precisions; where all are
    bf16 and `model.frozen_bf16` is set, the frozen weights are stored in bf16 (`frozen_dtype` sets a type directly).
    `packed` (default `model.packed`) runs batches padding-free where the attention allows it
    (`embedexp.model.packing`, attention batched as `model.attention_groups` says); `model.compile` compiles each
    decoder layer with `torch.compile` but those whose attention weights are read.
    """
    prompt = instantiate(cfg.prompt)
    if not isinstance(prompt, PromptTemplate):
        name = type(prompt).__name__
        raise ConfigError(f"prompt._target_ must build an embedexp.model.prompts.PromptTemplate, got {name}")
    backbone: Backbone = instantiate(cfg.model.backbone)
    model = backbone.model
    pooling = build_configured_pooling(cfg.pooling, int(model.config.hidden_size))
    pooling.layer = pooled_layer(pooling, num_decoder_layers(model))  # absolute: exports may drop the layers above
    reads_attention = pooling.needs_attention or eager_attention  # attention weights captured by hooks, eager only
    # the pooling reads a few layers' weights: the frozen layers below them may keep a faster, packed attention
    fast_prefix = pooling.needs_attention and not eager_attention and cfg.model.get("packed", False)
    prefix_attention = packed_name(attn_implementation(model)) if fast_prefix else None
    if reads_attention and attn_implementation(model) != "eager":
        log.info("attention weights are read: switching the backbone to eager attention")
        model.set_attn_implementation("eager")
    set_attention_mode(model, cfg.model.get("attention_mode") or "causal")
    packed = bool(cfg.model.get("packed", False)) if packed is None else packed
    if packed and (reads_attention or not use_packed_attention(model)):
        packed = False
    set_attention_groups(model, cfg.model.get("attention_groups") or "length")
    if cfg.model.get("init_adapter"):  # LLM2Vec: the MNTP LoRA merged into the base, a fresh LoRA on top
        model = load_adapter(model, cfg.model.init_adapter, config_key="model.init_adapter").merge_and_unload()
        log.info("model.init_adapter=%s merged into the backbone", cfg.model.init_adapter)
    if cfg.model.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if adapter_path:
        model = load_adapter(model, adapter_path, trainable=trainable)
        pooling.load_weights(str(Path(adapter_path) / POOLING_FOLDER))
        pooling.requires_grad_(trainable)
    elif new_lora and cfg.model.get("lora"):  # adapters end at the layer the pooling reads
        model = apply_lora(model, **cfg.model.lora, top_layer=pooling.layer)
    if not trainable:
        model.requires_grad_(False)
    if frozen_dtype is None and precisions and cfg.model.get("frozen_bf16"):
        frozen_dtype = frozen_weights_dtype(precisions)
    if frozen_dtype is not None:
        changed = hold_frozen_weights_in(model, frozen_dtype)
        log.info("frozen weights held in %s (%.1f M parameters)", frozen_dtype, changed / 1e6)
    if cfg.model.get("compile"):
        compile_layers_around_hooks(model, pooling, eager_attention)
    embedder = Embedder(
        model,
        backbone.tokenizer,
        pooling,
        prompt,
        max_length=cfg.model.max_length,
        padding_side=cfg.model.padding_side,
        name=backbone.name,
        packed=packed,
    )
    embedder.compile_guards = cfg.model.get("compile_guards") or "all"  # read by the training module
    embedder.prefix_attention = prefix_attention
    embedder.manifest = model_manifest(cfg, embedder, precisions)  # saved with it (embedexp.model.manifest)
    return embedder


def compile_layers_around_hooks(model: torch.nn.Module, pooling: Pooling, eager_attention: bool) -> None:
    """`model.compile`: compile the decoder layers, leaving eager those whose attention weights hooks read.

    Dynamo does not run hooks added to a compiled layer's attention, so a layer the pooling reads attention from stays
    uncompiled (the others compile); where every layer's weights are read (`eager_attention`, or a pooling that
    needs attention without naming its `attention_layers`: `Embedder.forward` then reads all), none is compiled.
    """
    read = getattr(pooling, "attention_layers", None) if pooling.needs_attention else ()
    if eager_attention or read is None:
        log.warning("model.compile=true ignored: every layer's attention weights are read, only eager layers give them")
        return
    n_layers = num_decoder_layers(model)
    keep_eager = frozenset(layer % n_layers for layer in read)
    compiled = compile_decoder_layers(model, keep_eager=keep_eager)
    if keep_eager:
        log.info("compiled %d decoder layers; %s stay eager (their attention is read)", compiled, sorted(keep_eager))


def build_configured_pooling(pooling_cfg: DictConfig, hidden_size: int) -> Pooling:
    """Instantiate `cfg.pooling`; a `hidden_size: null` key (poolings with weights) gets the backbone's size."""
    extra = {"hidden_size": hidden_size} if "hidden_size" in pooling_cfg and pooling_cfg.hidden_size is None else {}
    pooling = instantiate(pooling_cfg, **extra)
    if not isinstance(pooling, Pooling):
        name = type(pooling).__name__
        raise ConfigError(f"pooling._target_ must build an embedexp.model.pooling.Pooling, got {name}")
    return pooling
