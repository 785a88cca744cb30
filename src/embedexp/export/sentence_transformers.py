"""Write a sentence-transformers folder with `SentenceTransformer(modules=[Transformer, Pooling, Normalize]).save()`.

The Transformer holds the merged weights and the template-baked tokenizer. mean / last / weighted-mean / max (without
`exclude_prompt`) use sentence-transformers' own modules and load with a plain `SentenceTransformer(path)`. Every
other pooling (a user's too) is itself the pooling module, after `embedexp.export.st_modules.EmbedexpTransformer`
(loading needs both importable and `trust_remote_code=True`). Matryoshka
truncation is sentence-transformers' own `truncate_dim`, saved with the model. Bidirectional attention travels in
`config.json` (`is_causal: false`, which transformers reads when it builds the mask); the folder then requires the
transformers version it was checked with.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.normalize import Normalize
from sentence_transformers.base.modules.transformer import Transformer
from sentence_transformers.sentence_transformer.modules.pooling import Pooling as STPooling

from embedexp.export.st_modules import EmbedexpTransformer
from embedexp.export.tokenizer import bake_template, original_state
from embedexp.model.bidirectional import attention_mode
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import LastTokenPooling, MaxPooling, MeanPooling, Pooling, WeightedMeanPooling
from embedexp.model.prompts import PromptTemplate

# embedexp pooling class -> sentence-transformers pooling_mode (exact equivalents, see tests/test_export.py)
ST_POOLING_MODES = {
    MeanPooling: "mean",
    LastTokenPooling: "lasttoken",
    WeightedMeanPooling: "weightedmean",
    MaxPooling: "max",
}
TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
SOURCE = ".transformer_source"  # merged decoder + baked tokenizer the Transformer module loads; removed after saving


def st_pooling_mode(pooling: Pooling) -> str | None:
    """The sentence-transformers pooling mode computing exactly this pooling, or None (custom module needed)."""
    if pooling.exclude_prompt:
        return None
    return ST_POOLING_MODES.get(type(pooling))


def transformer_module(source: Path, pooling: Pooling, prompt: PromptTemplate, attention: str) -> Transformer:
    """sentence-transformers' Transformer over the saved decoder, or embedexp's for poolings that need more inputs."""
    common: dict[str, Any] = {
        "transformer_task": "feature-extraction",
        "modality_config": TEXT_MODALITY,
        "module_output_name": "token_embeddings",
    }
    if st_pooling_mode(pooling) is not None:
        return Transformer(str(source), **common)
    text_kwargs = {"return_special_tokens_mask": True}
    if prompt.n_copies > 1:  # echo: the pooled copy is marked by its token type ids
        text_kwargs["return_token_type_ids"] = True
    return EmbedexpTransformer(
        str(source),
        **common,
        processing_kwargs={"text": text_kwargs},
        attention_layers=list(getattr(pooling, "attention_layers", ())) if pooling.needs_attention else None,
        attention=attention,
        text_copies=prompt.n_copies,
    )


def pooling_module(pooling: Pooling, dim: int) -> torch.nn.Module:
    """sentence-transformers' Pooling in the equivalent mode, or a copy of the pooling itself (with its weights)."""
    mode = st_pooling_mode(pooling)
    if mode is not None:
        return STPooling(dim, mode, include_prompt=True)
    return copy.deepcopy(pooling)


def requirements(custom: bool, attention: str) -> dict[str, dict[str, str]]:
    """Version requirements sentence-transformers checks before loading (it reads them but never writes them)."""
    needed = {}
    if custom:
        needed["embedexp"] = {"specifier": ">=0.1", "reason": "Transformer module for a custom pooling"}
    if attention != "causal":
        reason = "bidirectional attention through config.is_causal (checked with this version)"
        needed["transformers"] = {"specifier": f">={transformers.__version__}", "reason": reason}
    return needed


def write_sentence_transformers(embedder: Embedder, folder: Path, truncate_dim: int | None = None) -> dict[str, Any]:
    """Write the folder for an embedder over a merged (adapter-free) decoder; returns the manifest entries about it.

    sentence-transformers prompts can only prepend a string, so the template is applied by the tokenizer and the
    model's own `query` / `document` prompts stay empty. `truncate_dim` (Matryoshka) is the model's `truncate_dim`:
    `encode` keeps the first `truncate_dim` dimensions of the normalised vector (`normalize_embeddings=True` or
    `model.similarity` re-normalise them).
    """
    model, pooling, prompt = embedder.model, embedder.pooling, embedder.prompt
    attention = attention_mode(model)
    custom = st_pooling_mode(pooling) is None
    dim = int(model.config.hidden_size)
    source = folder / SOURCE
    model.save_pretrained(source, safe_serialization=True)
    bake_template(embedder.tokenizer, prompt, embedder.max_length).save_pretrained(source)
    st_model = SentenceTransformer(
        modules=[transformer_module(source, pooling, prompt, attention), pooling_module(pooling, dim), Normalize()],
        device=str(next(model.parameters()).device),
        prompts={"query": "", "document": ""},
        similarity_fn_name="cosine",
        truncate_dim=truncate_dim,
    )
    st_model.save(str(folder), create_model_card=False)  # the embedexp model card is written beside it
    shutil.rmtree(source)
    needed = requirements(custom, attention)
    if needed:
        config_path = folder / "config_sentence_transformers.json"
        config = {**json.loads(config_path.read_text(encoding="utf-8")), "requirements": needed}
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {
        "pooling_mode": st_pooling_mode(pooling),
        "custom_modules": custom,
        "embed_dim": st_model.get_embedding_dimension(),  # truncate_dim when set
        "tokenizer_original": original_state(embedder.tokenizer),
    }
