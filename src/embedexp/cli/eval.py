"""Standalone evaluation: `python -m embedexp eval [run_dir=... | model_path=... | adapter_path=...]` writes a results
table (how each saved model is opened: `embedexp.export.resolve`)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.cli.runner import hydra_command
from embedexp.core.atomic import atomic_write_text
from embedexp.core.hardware import autocast_for
from embedexp.core.run_setup import PROVENANCE, RunSetup, setup_run
from embedexp.evaluation.clustering import evaluate_clustering, score_tasks, write_results_table
from embedexp.evaluation.score_cache import task_set_record
from embedexp.evaluation.tasks import build_tasks
from embedexp.export.overrides import asked_keys
from embedexp.export.resolve import OpenedModel, open_model, run_folder
from embedexp.export.runs import load_run_config
from embedexp.model.backbone import PACKAGE_SCHEME
from embedexp.model.prefix_store import open_prefix_store


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Take the run's settings, set up and score (the Python API of `embedexp eval`)."""
    take_run_settings(cfg)
    return score(setup_run(cfg))


def score(run: RunSetup) -> dict[str, float]:
    """Score the model the config names (`embedexp.export.resolve.open_model`: a run, adapter, checkpoint, export or
    sentence-transformers folder, or the base model of the groups) on the configured tasks; write tables."""
    cfg = run.cfg
    opened = open_model(cfg, precisions=run.precisions)
    if opened.kind in ("export", "sentence_transformers"):
        return evaluate_export(cfg, opened)
    embedder = opened.embedder
    embedder.prefix_store = open_prefix_store(cfg)
    embedder.enable_prefix_cache()  # the frozen model's states: one forward pass per prompt for a pooling grid
    tasks = build_tasks(cfg.tasks)
    name = f"{embedder.name}+{Path(opened.path).name}" if opened.path else embedder.name
    scores = evaluate_clustering(embedder, tasks, name, cfg.eval.batch_size, cfg.eval.precision)
    row = {
        "model": opened.label(cfg.get("label")),
        "pooling": type(embedder.pooling).__name__,
        "prompt": embedder.prompt.name,
        **scores,
    }
    md_path, _ = write_results_table([row], cfg.paths.output_dir, stem="eval_results", task_set=task_set_record(tasks))
    run_provenance = {**run.provenance, "model": opened.record()}
    atomic_write_text(run.output_dir / PROVENANCE, json.dumps(run_provenance, indent=2, default=str))
    print(md_path.read_text())
    return scores


def take_run_settings(cfg: DictConfig) -> None:
    """With `run_dir`: score as the run's own evaluation did (its tasks and `eval` settings) unless asked otherwise;
    `latest` becomes the folder it names."""
    run_dir = run_folder(cfg)
    if run_dir is None:
        return
    run_cfg = load_run_config(run_dir, cfg.paths)
    asked = asked_keys(cfg)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        if "tasks" not in asked and run_cfg.get("tasks") is not None:
            cfg.tasks = run_cfg.tasks
        for key, value in (run_cfg.get("eval") or {}).items():
            if f"eval.{key}" not in asked and key in cfg.eval:
                cfg.eval[key] = value


def evaluate_export(cfg: DictConfig, opened: OpenedModel) -> dict[str, float]:
    """Score an exported folder (any form) through `ExportedEncoder`, with optional per-task-type `prompts`;
    a plain sentence-transformers folder (no embedexp manifest) goes to `evaluate_sentence_transformer`."""
    from embedexp.evaluation.exported import ExportedEncoder

    prompts = OmegaConf.to_container(cfg.prompts) if cfg.get("prompts") else None
    if opened.kind == "sentence_transformers":
        return evaluate_sentence_transformer(cfg, prompts)
    encoder = ExportedEncoder(
        opened.export, prompts=prompts, batch_size=cfg.eval.batch_size, precision=cfg.eval.precision
    )
    tasks = build_tasks(cfg.tasks)
    scores = score_tasks(encoder, tasks)
    manifest = encoder.export.manifest
    pooling = manifest["pooling"]["target"].rsplit(".", 1)[-1]
    row = {"model": cfg.get("label") or cfg.model_path, "pooling": pooling, **scores}
    row["prompt"] = manifest["prompt"]["name"]
    md_path, _ = write_results_table([row], cfg.paths.output_dir, stem="eval_results", task_set=task_set_record(tasks))
    print(md_path.read_text())
    return scores


def evaluate_sentence_transformer(cfg: DictConfig, prompts: dict | None) -> dict[str, float]:
    """Score any sentence-transformers folder (e.g. a baseline encoder) through the same `mteb.evaluate` path."""
    import torch

    from embedexp.evaluation.sentence_transformer import ENCODE_KWARGS, pooling_name, sentence_transformer_encoder

    name = cfg.get("model_name") or _folder_label(str(cfg.model_path))
    encoder = sentence_transformer_encoder(cfg.model_path, prompts=prompts, name=name)
    tasks = build_tasks(cfg.tasks)
    with torch.inference_mode(), autocast_for(cfg.eval.precision, encoder.model.device):
        scores = score_tasks(encoder, tasks, {**ENCODE_KWARGS, "batch_size": int(cfg.eval.batch_size)})
    row = {"model": name, "pooling": pooling_name(encoder.model), "prompt": "prompts" if prompts else "none", **scores}
    md_path, _ = write_results_table([row], cfg.paths.output_dir, stem="eval_results", task_set=task_set_record(tasks))
    print(md_path.read_text())
    return scores


def _folder_label(model_path: str) -> str:
    """A model name for mteb: the package of a `pkg:` path, else the folder's name."""
    if model_path.startswith(PACKAGE_SCHEME):
        return model_path[len(PACKAGE_SCHEME) :].split("/", 1)[0]
    return Path(model_path).resolve().name


def mean_score(run: RunSetup) -> float:
    """Score; returns the mean V-measure (for sweepers)."""
    return score(run)["clustering_mean"]


main = hydra_command("eval", mean_score, prepare=take_run_settings)


if __name__ == "__main__":
    main()
