"""Write a sentence-transformers folder: Transformer (merged weights, template-baked tokenizer), Pooling, Normalize.

mean / last / weighted-mean / max (without `exclude_prompt`) use sentence-transformers' own modules and load with a
plain `SentenceTransformer(path)`. Other poolings use `embedexp.export.st_modules` (needs embedexp installed and
`trust_remote_code=True`). Bidirectional attention travels in `config.json` (`is_causal: false`, which transformers
reads when it builds the mask); the folder then requires the transformers version it was checked with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sentence_transformers
import torch
import transformers
from safetensors.torch import save_file
from sentence_transformers.base.modules.dense import Dense

from embedexp.export.tokenizer import bake_template, original_state
from embedexp.model.bidirectional import attention_mode
from embedexp.model.pooling import (
    POOLING_WEIGHTS,
    LastTokenPooling,
    MaxPooling,
    MeanPooling,
    Pooling,
    WeightedMeanPooling,
    pooled_dim,
)
from embedexp.model.prompts import PromptTemplate

# embedexp pooling class -> sentence-transformers pooling_mode (exact equivalents, see tests/test_export.py)
ST_POOLING_MODES = {
    MeanPooling: "mean",
    LastTokenPooling: "lasttoken",
    WeightedMeanPooling: "weightedmean",
    MaxPooling: "max",
}
ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
ST_DENSE = "sentence_transformers.base.modules.dense.Dense"
CUSTOM_TRANSFORMER = "embedexp.export.st_modules.EmbedexpTransformer"
CUSTOM_POOLING = "embedexp.export.st_modules.EmbedexpPooling"
TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def st_pooling_mode(pooling: Pooling) -> str | None:
    """The sentence-transformers pooling mode computing exactly this pooling, or None (custom module needed)."""
    if pooling.exclude_prompt:
        return None
    return ST_POOLING_MODES.get(type(pooling))


def pooling_spec(pooling: Pooling) -> dict[str, Any]:
    """Class path and constructor options of an embedexp pooling (for manifests and the custom module)."""
    spec = {"target": f"{type(pooling).__module__}.{type(pooling).__qualname__}", "options": pooling.options()}
    if pooling.has_weights:
        spec["weights"] = POOLING_WEIGHTS
    return spec


def _write_json(path: Path, data: dict) -> None:
    """Write indented JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers(
    model: torch.nn.Module,
    tokenizer,
    pooling: Pooling,
    prompt: PromptTemplate,
    max_length: int,
    folder: Path,
    truncate_dim: int | None = None,
) -> dict[str, Any]:
    """Write the folder for a merged (adapter-free) base decoder; returns the manifest entries describing it.

    `truncate_dim` (Matryoshka): a bias-free identity `Dense` module keeps the first `truncate_dim` dimensions of the
    pooled vector before `Normalize`, so a plain `SentenceTransformer(path)` returns truncated, re-normalised vectors
    (sentence-transformers' own `truncate_dim` is not saved with a model and truncates after normalising).
    """
    mode = st_pooling_mode(pooling)
    attention = attention_mode(model)
    custom = mode is None
    dim = int(model.config.hidden_size)
    model.save_pretrained(folder, safe_serialization=True)
    bake_template(tokenizer, prompt, max_length).save_pretrained(folder)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    transformer_config: dict[str, Any] = {
        "transformer_task": "feature-extraction",
        "modality_config": TEXT_MODALITY,
        "module_output_name": "token_embeddings",
        "model_kwargs": {"dtype": dtype},
    }
    if custom:
        text_kwargs = {"return_special_tokens_mask": True}
        if prompt.n_copies > 1:  # echo: the pooled copy is marked by its token type ids
            text_kwargs["return_token_type_ids"] = True
            transformer_config["text_copies"] = prompt.n_copies
        transformer_config["processing_kwargs"] = {"text": text_kwargs}
        transformer_config["attention_layers"] = (
            list(getattr(pooling, "layers", ())) if pooling.needs_attention else None
        )
        transformer_config["attention"] = attention
        if pooling.needs_attention:
            transformer_config["model_kwargs"]["attn_implementation"] = "eager"
        spec = {key: value for key, value in pooling_spec(pooling).items() if key != "weights"}
        pooling_config = {**spec, "embedding_dimension": pooled_dim(pooling, dim)}
    else:
        pooling_config = {"embedding_dimension": dim, "pooling_mode": mode, "include_prompt": True}
    _write_json(folder / "sentence_bert_config.json", transformer_config)
    _write_json(folder / "1_Pooling" / "config.json", pooling_config)
    if pooling.has_weights:
        weights = {f"pooling.{k}": v.detach().cpu().contiguous() for k, v in pooling.state_dict().items()}
        save_file(weights, str(folder / "1_Pooling" / "model.safetensors"))
    modules = [
        (CUSTOM_TRANSFORMER if custom else ST_TRANSFORMER, ""),
        (CUSTOM_POOLING if custom else ST_POOLING, "1_Pooling"),
    ]
    embed_dim = pooling_config["embedding_dimension"]
    if truncate_dim is not None:
        truncation = Dense(embed_dim, truncate_dim, bias=False, activation_function=None)
        with torch.no_grad():
            truncation.linear.weight.copy_(torch.eye(embed_dim)[:truncate_dim])
        (folder / "2_Dense").mkdir()
        truncation.save(str(folder / "2_Dense"))
        modules.append((ST_DENSE, "2_Dense"))
        embed_dim = truncate_dim
    normalize = f"{len(modules)}_Normalize"
    _write_json(
        folder / normalize / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    modules.append((ST_NORMALIZE, normalize))
    _write_json_list(
        folder / "modules.json", [{"idx": i, "name": str(i), "path": p, "type": t} for i, (t, p) in enumerate(modules)]
    )
    model_config: dict[str, Any] = {
        "model_type": "SentenceTransformer",
        "__version__": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "pytorch": torch.__version__,
        },
        # sentence-transformers prompts can only prepend a string; the template is applied by the tokenizer
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
        "embedexp": {
            "prompt_name": prompt.name,
            "prompt_template": prompt.template,
            "prompt_applied_by": "tokenizer (post-processor and normalizer in tokenizer.json)",
        },
    }
    requirements = {}
    if custom:
        requirements["embedexp"] = {"specifier": ">=0.1", "reason": "custom pooling module"}
    if attention != "causal":
        reason = "bidirectional attention through config.is_causal (checked with this version)"
        requirements["transformers"] = {"specifier": f">={transformers.__version__}", "reason": reason}
    if requirements:
        model_config["requirements"] = requirements
    _write_json(folder / "config_sentence_transformers.json", model_config)
    return {
        "pooling_mode": mode,
        "custom_modules": custom,
        "embed_dim": embed_dim,
        "tokenizer_original": original_state(tokenizer),
    }


def _write_json_list(path: Path, rows: list[dict]) -> None:
    """Write a JSON list (modules.json)."""
    path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
