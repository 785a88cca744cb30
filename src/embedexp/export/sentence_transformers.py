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

from embedexp.bidirectional import attention_mode
from embedexp.export.tokenizer import bake_template, original_state
from embedexp.pooling import LastTokenPooling, MaxPooling, MeanPooling, Pooling, WeightedMeanPooling
from embedexp.prompts import PromptTemplate

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
    options = {"exclude_prompt": pooling.exclude_prompt}
    for key in ("layers", "keep_sink"):
        if hasattr(pooling, key):
            value = getattr(pooling, key)
            options[key] = list(value) if isinstance(value, tuple) else value
    return {"target": f"{type(pooling).__module__}.{type(pooling).__qualname__}", "options": options}


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
) -> dict[str, Any]:
    """Write the folder for a merged (adapter-free) base decoder; returns the manifest entries describing it."""
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
        spec = pooling_spec(pooling)
        pooling_config = {**spec, "embedding_dimension": _pooled_dim(pooling, dim)}
    else:
        pooling_config = {"embedding_dimension": dim, "pooling_mode": mode, "include_prompt": True}
    _write_json(folder / "sentence_bert_config.json", transformer_config)
    _write_json(folder / "1_Pooling" / "config.json", pooling_config)
    _write_json(
        folder / "2_Normalize" / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    modules = [
        (CUSTOM_TRANSFORMER if custom else ST_TRANSFORMER, ""),
        (CUSTOM_POOLING if custom else ST_POOLING, "1_Pooling"),
        (ST_NORMALIZE, "2_Normalize"),
    ]
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
        "embed_dim": pooling_config["embedding_dimension"],
        "tokenizer_original": original_state(tokenizer),
    }


def _write_json_list(path: Path, rows: list[dict]) -> None:
    """Write a JSON list (modules.json)."""
    path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def _pooled_dim(pooling: Pooling, hidden: int) -> int:
    """Output size of a pooling over `hidden`-sized states (probed with a one-token input)."""
    states = torch.zeros(1, 2, hidden)
    mask = torch.ones(1, 2, dtype=torch.long)
    attention = torch.full((1, 2), 0.5) if pooling.needs_attention else None
    return int(pooling(states, mask, mask, attention).shape[-1])
