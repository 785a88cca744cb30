"""Export orchestration: write each requested form into a staging folder, self-check it, then rename it into place."""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from embedexp.core.atomic import atomic_folder, atomic_write_text
from embedexp.core.errors import ConfigError
from embedexp.core.hardware import configure_threads
from embedexp.core.progress import Progress
from embedexp.export.adapter import write_adapter
from embedexp.export.card import model_card
from embedexp.export.load import FORMATS
from embedexp.export.merged import merge_lora, up_to_pooled_layer, write_merged
from embedexp.export.selfcheck import PROBE_TEXTS, check_export, reference_vectors
from embedexp.export.sentence_transformers import write_sentence_transformers
from embedexp.export.source import ExportSource, load_export_source
from embedexp.model.manifest import complete, write_manifest
from embedexp.model.matryoshka import truncate_normalized

log = logging.getLogger(__name__)


def _formats(formats: Sequence[str] | str) -> list[str]:
    """Validate the requested forms and order them adapter, merged, sentence_transformers (merging is last)."""
    requested = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in requested if f not in FORMATS]
    if unknown or not requested:
        raise ConfigError(f"formats: {unknown or requested} invalid; choose from {list(FORMATS)}")
    return [f for f in FORMATS if f in requested]


def base_manifest(
    source: ExportSource, embed_dim: int, *, training_datasets: Any = None, truncate_dim: int | None = None
) -> dict[str, Any]:
    """What every form records about the model: recipe, backbone, size, and where it came from."""
    embedder = source.embedder
    parameters = sum(p.numel() for name, p in embedder.model.named_parameters() if "lora_" not in name)
    parameters += sum(p.numel() for p in embedder.pooling.parameters())
    return {
        **copy.deepcopy(complete(embedder)),  # the model manifest every saved form shares (embedexp.model.manifest)
        "name": source.name,
        "embed_dim": embed_dim,
        "truncate_dim": truncate_dim,
        "n_parameters": parameters,
        "similarity_fn_name": "cosine",
        "training_datasets": training_datasets,
        "source": {
            "run_dir": str(source.run_dir) if source.run_dir else None,
            "adapter_path": source.adapter_path,
            "ckpt_path": source.ckpt_path,
        },
    }


@dataclass
class FormWriter:
    """Writes the forms of one export: each into a staging folder, reloaded and self-checked there against the
    training module's `reference` vectors of `texts`; only a passing folder is renamed into place."""

    source: ExportSource
    manifest: dict[str, Any]
    reference: dict
    texts: list[str]
    min_cosine: float
    overwrite: bool
    progress: Progress

    def write(self, form: str, target: Path, write_files: Callable[[Path], dict]) -> dict[str, Any]:
        """Write one form with `write_files(staging)` (it returns manifest entries) and check it."""
        log.info("export: writing and self-checking the %s form", form)
        self.progress.describe(form)
        with atomic_folder(target, replace=self.overwrite) as staging:
            manifest = {**self.manifest, "format": form, **write_files(staging)}
            write_manifest(staging, manifest)
            manifest["selfcheck"] = check_export(staging, self.reference, self.texts, self.min_cosine)
            write_manifest(staging, manifest)
            card = model_card(manifest, self.source.records, str(target))
            (staging / "README.md").write_text(card, encoding="utf-8")
            make_readable(staging)
        check = manifest["selfcheck"]
        log.info("exported %s to %s (self-check min cosine %.7f)", form, target, check["min_cosine"])
        self.progress.update(1)
        return {"path": str(target), "min_cosine": check["min_cosine"], "selfcheck": check}


def make_readable(folder: Path) -> None:
    """Usual permissions for a shared model folder (staging folders and some weight files are created owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def export_model(
    source: ExportSource,
    formats: Sequence[str] | str,
    output_dir: str | Path,
    *,
    probe_texts: Sequence[str] | None = None,
    min_cosine: float = 0.9999,
    overwrite: bool = False,
    training_datasets: Any = None,
    truncate_dim: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Export `source` in each form to `<output_dir>/<form>/`; each is self-checked before it appears.

    `truncate_dim` (Matryoshka models): every form returns the first `truncate_dim` dimensions, re-normalised, and is
    checked against the training module's embeddings truncated the same way.
    """
    forms = _formats(formats)
    output_dir = Path(output_dir)
    targets = {form: output_dir / form for form in forms}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise ConfigError(f"output_dir: {existing} already exist; set overwrite=true to replace them")
    texts = list(probe_texts or PROBE_TEXTS)
    embedder = source.embedder
    reference = reference_vectors(embedder, texts)
    full_dim = int(reference["right"].shape[1])
    if truncate_dim is not None:
        if not 1 <= int(truncate_dim) <= full_dim:
            raise ConfigError(f"truncate_dim={truncate_dim} must be in 1..{full_dim} (this model's embedding size)")
        truncate_dim = int(truncate_dim)
        reference = {side: truncate_normalized(vectors, truncate_dim) for side, vectors in reference.items()}
    manifest = base_manifest(
        source, truncate_dim or full_dim, training_datasets=training_datasets, truncate_dim=truncate_dim
    )
    progress = Progress(len(forms), "export", "forms")
    writer = FormWriter(source, manifest, reference, texts, min_cosine, overwrite, progress)
    results: dict[str, dict[str, Any]] = {}
    if "adapter" in forms:
        results["adapter"] = writer.write("adapter", targets["adapter"], functools.partial(write_adapter, embedder))
    if {"merged", "sentence_transformers"} & set(forms):
        # in place: the reference vectors are already computed
        embedder.model = up_to_pooled_layer(merge_lora(embedder.model), embedder.pooling)
    if "merged" in forms:
        results["merged"] = writer.write("merged", targets["merged"], functools.partial(write_merged, embedder))
    if "sentence_transformers" in forms:

        def write(folder: Path) -> dict:
            entries = write_sentence_transformers(embedder, folder, truncate_dim=truncate_dim)
            return {
                "embed_dim": entries.pop("embed_dim"),
                "tokenizer_original": entries.pop("tokenizer_original"),
                "sentence_transformers": entries,
            }

        results["sentence_transformers"] = writer.write(
            "sentence_transformers", targets["sentence_transformers"], write
        )
    progress.close()
    summary = {form: {"path": r["path"], "min_cosine": r["min_cosine"]} for form, r in results.items()}
    atomic_write_text(output_dir / "export_summary.json", json.dumps(summary, indent=2) + "\n")
    return results


def export_from_config(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """`python -m embedexp export`: resolve the source from the config and export the requested forms."""
    configure_threads(cfg.get("num_threads", "auto"))
    source = load_export_source(cfg)
    output_dir = cfg.get("output_dir") or (
        source.run_dir / "export" if source.run_dir is not None else Path(cfg.paths.output_dir)
    )
    training = cfg.get("training_datasets")
    training = OmegaConf.to_container(training) if OmegaConf.is_config(training) else training
    return export_model(
        source,
        list(cfg.formats),
        output_dir,
        probe_texts=list(cfg.probe_texts) if cfg.get("probe_texts") else None,
        min_cosine=float(cfg.min_cosine),
        overwrite=bool(cfg.overwrite),
        training_datasets=training,
        truncate_dim=cfg.get("truncate_dim"),
    )
