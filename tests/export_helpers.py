"""Helpers for the export tests: a tiny training-run folder, the export function, the training module's vectors."""

from __future__ import annotations

import json

import numpy as np
import torch
from omegaconf import OmegaConf

from embedexp.export import export_from_config
from embedexp.export.selfcheck import reference_vectors
from embedexp.export.source import load_export_source
from embedexp.model.build import build_embedder
from embedexp.model.pooling import POOLING_FOLDER

from .conftest import TINY_OVERRIDES, compose_config

TEXTS = ["A fast text editor.", "Chess engine?", '"Library" for parsing JSON documents in C', "GNU compiler collection"]
METRICS = {"val/clustering_mean": 0.5, "zero_shot/clustering_mean": 0.4, "val/TaskA": 0.5, "zero_shot/TaskA": 0.4}


def randomize_lora(embedder) -> torch.Generator:
    """Give every LoRA B matrix seeded random values (a trained-looking adapter); returns the generator."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in embedder.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return generator


def make_run(folder, overrides: list[str]):
    """A training-run folder as `train` leaves it (config, metrics, adapter), with non-zero random LoRA weights."""
    cfg = compose_config("train", TINY_OVERRIDES + overrides, folder)
    embedder = build_embedder(cfg)
    generator = randomize_lora(embedder)
    with torch.no_grad():
        for parameter in embedder.pooling.parameters():  # trained-looking pooling weights (latent attention)
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    embedder.model.save_pretrained(folder / "adapter")
    embedder.pooling.save(str(folder / "adapter" / POOLING_FOLDER))
    embedder.tokenizer.save_pretrained(folder / "adapter")
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    return folder


def export(run, output, *overrides: str) -> dict:
    """Run the export entry point's function on a composed export config."""
    cfg = compose_config("export", [f"run_dir={run}", f"output_dir={output}", *overrides], output.parent / "hydra")
    return export_from_config(cfg)


def reference(run, texts: list[str] = TEXTS) -> dict[str, np.ndarray]:
    """The training module's embeddings of `texts` for left and right padding."""
    cfg = compose_config("export", [f"run_dir={run}"], run / "ref")
    return reference_vectors(load_export_source(cfg).embedder, texts)
