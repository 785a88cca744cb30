"""Training entry point: `python -m embedexp train [overrides]` (Hydra; `-m` for multirun sweeps)."""

from __future__ import annotations

import logging

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import ConfigError, exit_on_error
from embedexp.core.instantiate import instantiate_group, instantiate_node
from embedexp.core.run_setup import setup_run
from embedexp.core.run_status import RunStatus
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.prefix_store import open_prefix_store
from embedexp.training.checkpointing import resolve_ckpt_path
from embedexp.training.run_callbacks import FinishLoggerRuns, LogRunConfig, SaveResults

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit the embedder and return the run's metrics (also written to <output_dir>/metrics.json)."""
    run = setup_run(cfg)
    embedder = build_embedder(run.cfg, precisions=run.precisions)
    embedder.prefix_store = open_prefix_store(run.cfg)
    datamodule = instantiate(run.cfg.data)
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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the optimised metric for sweepers."""
    quiet_console()
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
