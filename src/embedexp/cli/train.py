"""Training entry point: `python -m embedexp train [overrides]` (Hydra; `-m` for multirun sweeps)."""

from __future__ import annotations

import logging

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from embedexp.cli.runner import hydra_command
from embedexp.core.errors import ConfigError
from embedexp.core.instantiate import instantiate_group, instantiate_node
from embedexp.core.run_setup import RunSetup, setup_run
from embedexp.core.run_status import RunStatus
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.prefix_store import open_prefix_store
from embedexp.training.checkpointing import resolve_ckpt_path
from embedexp.training.run_callbacks import FinishLoggerRuns, LogRunConfig, SaveResults

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Set up the run and fit the embedder (the Python API of `embedexp train`); returns the run's metrics."""
    return fit(setup_run(cfg))


def fit(run: RunSetup) -> dict:
    """Fit the embedder of a set-up run and return its metrics (also written to <output_dir>/metrics.json)."""
    embedder = build_embedder(run.cfg, precisions=run.precisions)
    embedder.prefix_store = open_prefix_store(run.cfg)
    datamodule = instantiate_node(run.cfg.data)
    module = build_module(run.cfg, embedder)
    results = SaveResults(run)
    records = [LogRunConfig(run), results, RunStatus(run.output_dir, run.cfg.run_name), FinishLoggerRuns()]
    callbacks = instantiate_group(run.cfg.get("callbacks"), run.cfg.get("tasks")) + records
    if run.cfg.get("contamination"):  # refuses training pairs that repeat evaluation texts (conf/contamination/)
        callbacks.insert(0, instantiate_node(run.cfg.contamination))
    loggers = instantiate_group(run.cfg.get("logger"))
    trainer: L.Trainer = instantiate(run.cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(run.cfg))
    return results.metrics


def build_module(cfg: DictConfig, embedder: Embedder) -> L.LightningModule:
    """The LightningModule of `objective` (a `_partial_` target, conf/objective/), given the embedder."""
    objective = cfg.get("objective")
    if not objective or "_target_" not in objective:
        raise ConfigError("objective: needs a _target_ LightningModule (see conf/objective/contrastive.yaml)")
    return instantiate_node(objective)(embedder)


def fit_for_sweeper(run: RunSetup) -> float | None:
    """Fit; returns the optimised metric for sweepers (Optuna). SIGTERM exits with 143 and says how to resume."""
    try:
        metrics = fit(run)
    except SIGTERMException:
        folder = run.cfg.paths.output_dir
        log.error("stopped by SIGTERM; checkpoint saved. Resume: hydra.run.dir=%s ckpt_path=last", folder)
        raise SystemExit(143) from None
    value = metrics.get(run.cfg.get("optimized_metric") or "")
    return None if value is None else float(value)


main = hydra_command("train", fit_for_sweeper)


if __name__ == "__main__":
    main()
