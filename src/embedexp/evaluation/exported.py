"""An mteb encoder for exported folders: `mteb.evaluate(ExportedEncoder(path), tasks)`, with per-task-type prompts.

`prompts` maps mteb prompt keys (task name, task type such as `Clustering`, `<type>-query`, `query`, ...; mteb's
priority order) to prompt templates with a `{text}` slot; tasks without a match use the run's own template.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder, get_prompt_name

from embedexp.core.hardware import autocast_for, resolve_precision
from embedexp.core.progress import encode_with_progress
from embedexp.evaluation.mteb_encoder import build_model_meta
from embedexp.export.load import LoadedExport, load_export
from embedexp.model.prompts import PromptTemplate


class ExportedEncoder(AbsEncoder):
    """Encodes with a reloaded export (any form), choosing the prompt template per task."""

    def __init__(
        self,
        path: str | Path | LoadedExport,
        prompts: Mapping[str, str] | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        name: str | None = None,
        precision: str = "32",
    ) -> None:
        """`path`: an exported folder (or an already loaded one); `prompts`: mteb prompt key -> template;
        `precision`: autocast while encoding (32, bf16 or auto)."""
        self.export = path if isinstance(path, LoadedExport) else load_export(path, device=device)
        self.batch_size, self.device = batch_size, torch.device(device)
        self.precision = resolve_precision(precision, "eval.precision", "autocast", self.device.type)
        self.prompts = {key: PromptTemplate(name=key, template=template) for key, template in (prompts or {}).items()}
        manifest = self.export.manifest
        self.mteb_model_meta = build_model_meta(
            name or manifest["name"],
            n_parameters=self.export.n_parameters,
            max_tokens=self.export.max_length,
            embed_dim=int(manifest["embed_dim"]),
            use_instructions=self.export.prompt.template != "{text}" or bool(self.prompts),
            training_datasets=manifest.get("training_datasets"),
            loader=load_exported_encoder,
            loader_kwargs={"path": str(self.export.path), "prompts": dict(prompts or {}), "batch_size": batch_size},
            framework=("Sentence Transformers", "PyTorch")
            if self.export.form == "sentence_transformers"
            else ("PyTorch",),
        )

    def prompt_for(self, task_metadata, prompt_type=None) -> PromptTemplate:
        """The template for this task (mteb's key priority), else the run's own."""
        if not self.prompts:
            return self.export.prompt
        key = get_prompt_name({k: p.template for k, p in self.prompts.items()}, task_metadata, prompt_type)
        return self.prompts[key] if key else self.export.prompt

    def encode(
        self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None, **kwargs: Any
    ) -> np.ndarray:
        """Embed all texts of the dataloader with the task's template (progress per task)."""
        texts = [text for batch in inputs for text in batch["text"]]
        prompt = self.prompt_for(task_metadata, prompt_type)
        with autocast_for(self.precision, self.device):
            return encode_with_progress(
                lambda chunk: self.export.encode(chunk, batch_size=self.batch_size, prompt=prompt),
                texts,
                f"embed {task_metadata.name}",
            )


def load_exported_encoder(model_name: str, revision: str | None = None, **kwargs: Any) -> ExportedEncoder:
    """mteb `ModelMeta.loader`: `meta.load_model()` reloads the folder recorded in `loader_kwargs['path']`."""
    return ExportedEncoder(kwargs.pop("path"), name=model_name, **kwargs)
