"""Reload any exported folder (its `embedexp_manifest.json` says which form) and embed texts with it.

sentence-transformers folders load with `SentenceTransformer`; merged folders with transformers alone; adapter folders
with transformers + peft on the base model. Prompt and pooling of the last two come from the manifest.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from sentence_transformers.util import import_from_string
from transformers import AutoModel, AutoTokenizer

from embedexp.core.errors import ConfigError
from embedexp.export.tokenizer import bake_template, unbake
from embedexp.model.bidirectional import set_attention_mode
from embedexp.model.embedder import Embedder
from embedexp.model.lora import load_adapter
from embedexp.model.manifest import MANIFEST, pooling_record, prompt_record, write_manifest  # noqa: F401
from embedexp.model.manifest import read_manifest as read_saved_manifest
from embedexp.model.matryoshka import truncate_normalized
from embedexp.model.pooling import POOLING_FOLDER, Pooling
from embedexp.model.prompts import PromptTemplate

FORMATS = ("adapter", "merged", "sentence_transformers")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an exported folder; a folder without one is not an embedexp export."""
    manifest = read_saved_manifest(folder)
    if manifest is None or "format" not in manifest:
        raise ConfigError(f"{folder}: no export {MANIFEST}; not a folder written by `python -m embedexp export`")
    return manifest


def load_pooling(folder: Path, manifest: dict[str, Any]) -> Pooling:
    """The pooling of an adapter or merged folder: its class from the manifest, options and weights from `pooling/`."""
    target = manifest["pooling"]["target"]
    try:
        pooling_class = import_from_string(target)
    except ImportError as err:
        raise ConfigError(
            f"{folder / MANIFEST}: pooling class {target} cannot be imported ({err}); install its package or put its "
            "module on PYTHONPATH"
        ) from err
    if not (isinstance(pooling_class, type) and issubclass(pooling_class, Pooling)):
        raise ConfigError(f"{folder / MANIFEST}: pooling {target} is not an embedexp.model.pooling.Pooling")
    return pooling_class.load(str(folder / POOLING_FOLDER))


def manifest_prompt(manifest: dict[str, Any]) -> PromptTemplate:
    """The run's prompt template, rebuilt from its class (PromptTemplate in manifests that do not name one)."""
    record = dict(manifest["prompt"])
    target = record.pop("target", None)
    prompt_class = import_from_string(target) if target else PromptTemplate
    if not (isinstance(prompt_class, type) and issubclass(prompt_class, PromptTemplate)):
        raise ConfigError(f"{MANIFEST}: prompt {target} is not an embedexp.model.prompts.PromptTemplate")
    return prompt_class(**record)


def _model_kwargs(manifest: dict[str, Any]) -> dict[str, Any]:
    """dtype and attention implementation the export was checked with."""
    backbone = manifest.get("backbone", {})
    return {
        "dtype": backbone.get("dtype", "float32"),
        "attn_implementation": manifest.get("attn_implementation", "sdpa"),
    }


def _base_model(manifest: dict[str, Any]) -> torch.nn.Module:
    """The base decoder an adapter belongs to: its saved folder if it exists here, else the recorded backbone spec."""
    base = manifest.get("base_model_name_or_path")
    if base and Path(base).is_dir():
        backbone = AutoModel.from_pretrained(base, **_model_kwargs(manifest))
    else:
        backbone = instantiate(manifest["backbone"]).model
        backbone.set_attn_implementation(_model_kwargs(manifest)["attn_implementation"])
    set_attention_mode(backbone, _attention_mode(manifest))
    if manifest.get("init_adapter"):  # the run started from another adapter (e.g. MNTP), merged into its base
        backbone = load_adapter(backbone, manifest["init_adapter"], config_key="init_adapter").merge_and_unload()
    return backbone


def _attention_mode(manifest: dict[str, Any]) -> str:
    """`causal` or `bidirectional` (`model.attention_mode` of the run; older manifests: causal)."""
    return manifest.get("attention_mode", "causal")


class LoadedExport:
    """An exported model reloaded from disk, with one `encode` for every form."""

    def __init__(self, path: Path, manifest: dict[str, Any], model: Any) -> None:
        """`model`: a SentenceTransformer (sentence_transformers form) or an Embedder (other forms)."""
        self.path, self.manifest, self.model = path, manifest, model
        self.form: str = manifest["format"]
        self.prompt = manifest_prompt(manifest)
        self.max_length: int = int(manifest["max_length"])
        self._tokenizers: dict[str, Any] = {}

    @property
    def n_parameters(self) -> int:
        """Number of parameters of the reloaded model."""
        return sum(p.numel() for p in self.model.parameters())

    @contextmanager
    def _configured(self, padding_side: str | None, prompt: PromptTemplate | None):
        """Temporarily set the padding side and (for another template than the run's) the prompt."""
        if self.form != "sentence_transformers":
            saved = (self.model.padding_side, self.model.prompt)
            self.model.padding_side = padding_side or saved[0]
            self.model.prompt = prompt or saved[1]
            try:
                yield
            finally:
                self.model.padding_side, self.model.prompt = saved
            return
        module = self.model[0]
        saved_processor = module.processor
        if prompt is not None and prompt.template != self.prompt.template:
            module.processor = self._baked(prompt)
        saved_side = module.processor.padding_side
        module.processor.padding_side = padding_side or saved_side
        try:
            yield
        finally:
            module.processor.padding_side = saved_side
            module.processor = saved_processor

    def _baked(self, prompt: PromptTemplate):
        """The folder's tokenizer re-baked with another template (cached)."""
        if prompt.template not in self._tokenizers:
            plain = unbake(self.model[0].processor, self.manifest["tokenizer_original"])
            self._tokenizers[prompt.template] = bake_template(plain, prompt, self.max_length)
        return self._tokenizers[prompt.template]

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        show_progress: bool = False,
        padding_side: str | None = None,
        prompt: PromptTemplate | None = None,
    ) -> np.ndarray:
        """L2-normalised float32 embeddings [N, D]; `prompt` replaces the run's template, `padding_side` its padding."""
        texts = list(texts)
        with self._configured(padding_side, prompt), torch.inference_mode():
            if self.form == "sentence_transformers":
                vectors = self.model.encode(  # truncates to its saved `truncate_dim`, then re-normalises
                    texts,
                    batch_size=batch_size,
                    show_progress_bar=show_progress,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            else:
                vectors = self.model.encode(texts, batch_size=batch_size, show_progress=show_progress)
                vectors = truncate_normalized(vectors, self.manifest.get("truncate_dim"))
        return np.asarray(vectors, dtype=np.float32)


def load_export(path: str | Path, device: str = "cpu") -> LoadedExport:
    """Reload an exported folder of any form."""
    path = Path(path)
    manifest = read_manifest(path)
    form = manifest.get("format")
    if form not in FORMATS:
        raise ConfigError(f"{path}/{MANIFEST}: unknown format {form!r}; expected one of {FORMATS}")
    if form == "sentence_transformers":
        from sentence_transformers import SentenceTransformer

        custom = bool(manifest["sentence_transformers"]["custom_modules"])
        return LoadedExport(path, manifest, SentenceTransformer(str(path), device=device, trust_remote_code=custom))
    if form == "merged":
        model = AutoModel.from_pretrained(str(path), **_model_kwargs(manifest))
        model = set_attention_mode(model, _attention_mode(manifest))
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(_base_model(manifest), str(path), is_trainable=False)
    pooling = load_pooling(path, manifest)
    embedder = Embedder(
        model.to(device).eval(),
        AutoTokenizer.from_pretrained(str(path)),
        pooling.to(device).eval(),
        manifest_prompt(manifest),
        max_length=int(manifest["max_length"]),
        padding_side=manifest.get("padding_side", "right"),
        name=manifest.get("name", path.name),
    )
    return LoadedExport(path, manifest, embedder)
