"""Training entry point: `python -m embedexp train [overrides]` (Hydra; `-m` for multirun sweeps)."""

from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.core.atomic import atomic_write_text
from embedexp.core.compat import started_experiment
from embedexp.core.config import CONFIG_DIR
from embedexp.core.errors import ConfigError, exit_on_error
from embedexp.core.hardware import configure_threads, resolve_config_precisions
from embedexp.core.instantiate import instantiate_node
from embedexp.core.progress import progress_mode
from embedexp.core.provenance import provenance
from embedexp.core.run_status import FINISHED, RunStatus, classify
from embedexp.evaluation.callback import ClusteringEvalCallback
from embedexp.evaluation.console import print_before_after
from embedexp.evaluation.score_cache import task_set_record
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import POOLING_WEIGHTS, save_pooling_weights
from embedexp.training.checkpointing import AtomicCheckpointIO

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None, tasks_cfg: DictConfig | None = None) -> list:
    """Instantiate every `_target_` entry of a callbacks/logger group (empty or missing groups give [])."""
    if not group:
        return []
    return [instantiate_node(node, tasks_cfg) for node in group.values() if node and "_target_" in node]


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last`: the newest of this run's checkpoints/{last,on_exception}.ckpt; `auto`: the same, or none."""
    path = cfg.get("ckpt_path")
    if path in ("last", "auto"):
        folder = Path(cfg.paths.output_dir) / "checkpoints"
        found = [p for p in (folder / "last.ckpt", folder / "on_exception.ckpt") if p.is_file()]
        if path == "auto" and not found:
            return None
        path = str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else str(folder / "last.ckpt")
    if path and not Path(path).is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at {path}")
    return path


def run_name(cfg: DictConfig) -> str:
    """The W&B run name: `run_name`, else this job's overrides, else the task name."""
    if cfg.get("run_name"):
        return cfg.run_name
    if HydraConfig.initialized():
        return HydraConfig.get().job.override_dirname or cfg.task_name
    return cfg.task_name


def train(cfg: DictConfig) -> dict:
    """Fit the embedder contrastively and return the metrics (also written to <output_dir>/metrics.json)."""
    start = time.perf_counter()
    configure_threads(cfg.get("num_threads", "auto"))
    precision = resolve_config_precisions(cfg)  # `auto`: bf16 only where it is faster on this machine
    run_provenance = provenance(cfg.seed, precision)  # the code and machine as they were when the run started
    atomic_write_text(Path(cfg.paths.output_dir) / "provenance.json", json.dumps(run_provenance, indent=2))
    L.seed_everything(cfg.seed, workers=True)
    with open_dict(cfg):
        cfg.run_name = run_name(cfg)
    embedder = build_embedder(cfg)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, embedder)
    callbacks = instantiate_group(cfg.get("callbacks"), cfg.get("tasks"))
    if cfg.get("contamination"):  # refuses training pairs that repeat evaluation texts (conf/contamination/)
        callbacks.append(instantiate_node(cfg.contamination))
    loggers = instantiate_group(cfg.get("logger"))
    status = RunStatus(cfg.paths.output_dir)
    trainer_overrides = {}
    if not cfg.trainer.get("plugins") and "deepspeed" not in str(cfg.trainer.get("strategy")).lower():
        trainer_overrides["plugins"] = [AtomicCheckpointIO()]  # a kill mid-write keeps the previous checkpoint
    if cfg.trainer.get("enable_progress_bar") is None and progress_mode() != "bar":
        trainer_overrides["enable_progress_bar"] = False  # off a terminal the ProgressLog callback writes lines
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, status], logger=loggers or False, **trainer_overrides
    )
    status.enabled = trainer.is_global_zero
    hyperparams = OmegaConf.to_container(cfg, resolve=True)
    hyperparams["machine"] = run_provenance["machine"]  # runs from different CPUs can be told apart
    if HydraConfig.initialized():  # the sweep report groups W&B runs by these, like .hydra/overrides.yaml
        hyperparams["overrides"] = list(HydraConfig.get().overrides.task)
    hyperparams["task_set"] = scored_task_set(callbacks)
    for logger in loggers:
        logger.log_hyperparams(hyperparams)
    status.start(cfg.run_name)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg))
        metrics = collect_metrics(cfg, trainer, callbacks, start, run_provenance)
        metrics["task_set"] = hyperparams["task_set"]
        metrics["run/status"] = FINISHED
        if trainer.is_global_zero:
            save_adapter(embedder, Path(cfg.paths.output_dir) / "adapter")
            atomic_write_text(Path(cfg.paths.output_dir) / "metrics.json", json.dumps(metrics, indent=2))
    except BaseException as error:  # noqa: BLE001 - recorded, then re-raised
        state, reason, exit_code = classify(error, trainer)
        status.end(state, reason, trainer.global_step)
        finish_loggers(loggers, state, reason, trainer.global_step, exit_code)
        raise
    status.end(FINISHED, None, trainer.global_step)
    finish_loggers(loggers, FINISHED, None, trainer.global_step, 0)
    return metrics


def scored_task_set(callbacks: list) -> dict | None:
    """The exact clustering tasks the run scores (name, number of texts, hash of texts and labels), or None."""
    evaluator = next((c for c in callbacks if isinstance(c, ClusteringEvalCallback)), None)
    return None if evaluator is None else task_set_record(evaluator.tasks)


def build_module(cfg: DictConfig, embedder: Embedder) -> L.LightningModule:
    """The LightningModule of `objective` (a `_partial_` target, conf/objective/), given the embedder."""
    objective = cfg.get("objective")
    if not objective or "_target_" not in objective:
        raise ConfigError("objective: needs a _target_ LightningModule (see conf/objective/contrastive.yaml)")
    return instantiate_node(objective)(embedder)


def collect_metrics(cfg: DictConfig, trainer: L.Trainer, callbacks: list, start: float, run_provenance: dict) -> dict:
    """Final logged metrics, zero-shot and final clustering scores, wall time and peak memory."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    evaluator = next((c for c in callbacks if isinstance(c, ClusteringEvalCallback)), None)
    if evaluator is not None and evaluator.final is not None:
        final = {k: v for k, v in evaluator.final.items() if k not in ("stage", "epoch", "step")}
        metrics.update({f"val/{k}": v for k, v in final.items()})
        if evaluator.zero_shot is not None:
            zero = {k: v for k, v in evaluator.zero_shot.items() if k not in ("stage", "epoch", "step")}
            metrics.update({f"zero_shot/{k}": v for k, v in zero.items()})
            print_before_after(zero, final)
    metrics["time/total_s"] = time.perf_counter() - start
    metrics["memory/peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics["run_name"] = cfg.run_name
    metrics["provenance"] = run_provenance
    return metrics


def save_adapter(embedder, folder: Path) -> None:
    """Save the LoRA adapter (peft format) and any pooling weights so `eval`/export can reload them."""
    if hasattr(embedder.model, "peft_config"):
        embedder.model.save_pretrained(str(folder))
        embedder.tokenizer.save_pretrained(str(folder))
        if save_pooling_weights(embedder.pooling, folder):
            log.info("pooling weights saved to %s", folder / POOLING_WEIGHTS)
        log.info("LoRA adapter saved to %s", folder)


def finish_loggers(loggers: list, status: str, reason: str | None, step: int, exit_code: int) -> None:
    """Close each logger's run with the run's status: W&B runs record `run/status`, `run/reason`, `run/last_step` in
    their summary and end with `exit_code` (0 only when finished; the next multirun job then starts its own run)."""
    for logger in loggers:
        experiment = started_experiment(logger)
        if experiment is None or not callable(getattr(experiment, "finish", None)):
            continue
        summary = getattr(experiment, "summary", None)
        if summary is not None:
            summary.update({"run/status": status, "run/reason": reason or "", "run/last_step": int(step)})
        experiment.finish(exit_code=exit_code)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the optimised metric for sweepers."""
    try:
        with exit_on_error(log):
            metrics = train(cfg)
    except SIGTERMException:
        folder = cfg.paths.output_dir
        log.error("stopped by SIGTERM; checkpoint saved. Resume: hydra.run.dir=%s ckpt_path=last", folder)
        raise SystemExit(143) from None
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
