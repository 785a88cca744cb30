"""A training run's records, kept by Lightning callbacks: its identity logged before training, metrics.json and the
adapter at the end of fit, and the loggers' runs closed with the run's status (`run_status.json` is kept by
`embedexp.core.run_status.RunStatus`)."""

from __future__ import annotations

import json
import logging
import resource
import time
from typing import Any, Protocol, runtime_checkable

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from embedexp.core.atomic import atomic_write_text
from embedexp.core.compat import started_experiment
from embedexp.core.config import hydra_choices
from embedexp.core.run_setup import RunSetup
from embedexp.core.run_status import FINISHED, classify
from embedexp.model.manifest import save_adapter

log = logging.getLogger(__name__)


@runtime_checkable
class RecordsMetrics(Protocol):
    """A callback whose results belong in the run's metrics.json (the clustering evaluation's scores)."""

    def run_metrics(self) -> dict[str, Any]:
        """Entries for metrics.json."""
        ...


class LogRunConfig(L.Callback):
    """Logs the run's identity to every logger before training: the option chosen in each config group as a
    top-level key (`pooling: mean`, `prompt: eol`, ..., so W&B tables and parallel-coordinates group runs by the
    names typed), the seed, the run name, the command-line overrides, the machine, and the resolved config (`cfg`)."""

    def __init__(self, run: RunSetup) -> None:
        """`run`: the set-up run (its resolved config and provenance)."""
        self.run = run

    def hyperparameters(self) -> dict[str, Any]:
        """What the loggers record (W&B: the run config; CSV: hparams.yaml)."""
        cfg = self.run.cfg
        return {
            **hydra_choices(),
            "seed": cfg.seed,
            "run_name": cfg.get("run_name"),
            # the sweep report groups W&B runs by these, like .hydra/overrides.yaml
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
            "machine": self.run.provenance["machine"],  # runs from different CPUs can be told apart
            "cfg": OmegaConf.to_container(cfg, resolve=True),
        }

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Log the hyperparameters once the loggers exist."""
        if trainer.loggers:
            hyperparameters = self.hyperparameters()
            for logger in trainer.loggers:
                logger.log_hyperparams(hyperparameters)


class SaveResults(L.Callback):
    """At the end of fit: the run's metrics (the last logged values, each `RecordsMetrics` callback's entries, time,
    peak memory, provenance) into `metrics.json`, and the LoRA adapter with tokenizer and pooling into `adapter/`
    (rank 0 writes). `metrics` holds them for the caller."""

    def __init__(self, run: RunSetup) -> None:
        """`run`: the set-up run."""
        self.run = run
        self.metrics: dict[str, Any] = {}
        self.fit_started = run.started

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start-up ends here (model, data, contamination index and pairs are built)."""
        self.fit_started = time.perf_counter()

    def collect(self, trainer: L.Trainer) -> dict[str, Any]:
        """The run's final metrics."""
        metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["task_set"] = None  # runs without a clustering evaluation scored no tasks
        for callback in trainer.callbacks:
            if isinstance(callback, RecordsMetrics):
                metrics.update(callback.run_metrics())
        now = time.perf_counter()
        metrics["time/total_s"] = now - self.run.started
        metrics["time/startup_s"] = self.fit_started - self.run.started
        evaluation = sum(v for k, v in metrics.items() if k.startswith("time/eval_") and isinstance(v, float))
        metrics["time/train_s"] = now - self.fit_started - evaluation  # fit less its clustering evaluations
        metrics["memory/peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        metrics["run_name"] = self.run.cfg.get("run_name")
        metrics["choices"] = hydra_choices()
        metrics["provenance"] = self.run.provenance
        metrics["run/status"] = FINISHED
        return metrics

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the adapter and metrics.json."""
        self.metrics = self.collect(trainer)
        if not trainer.is_global_zero:
            return
        embedder = pl_module.embedder
        if hasattr(embedder.model, "peft_config"):  # runs without LoRA (model.lora=null) have no adapter
            save_adapter(embedder, self.run.output_dir / "adapter")
            log.info("LoRA adapter and pooling saved to %s", self.run.output_dir / "adapter")
        atomic_write_text(self.run.output_dir / "metrics.json", json.dumps(self.metrics, indent=2))


class FinishLoggerRuns(L.Callback):
    """Closes each logger's started run with the run's status: a W&B run records `run/status`, `run/reason` and
    `run/last_step` in its summary and ends with exit code 0 only when the run finished (143 after SIGTERM, 130 after
    Ctrl-C, 1 after an error); the next multirun job then starts its own run."""

    @staticmethod
    def finish(trainer: L.Trainer, status: str, reason: str | None, exit_code: int) -> None:
        """Record the status in each started run's summary and finish it."""
        for logger in trainer.loggers:
            experiment = started_experiment(logger)
            if experiment is None or not callable(getattr(experiment, "finish", None)):
                continue
            summary = getattr(experiment, "summary", None)
            if summary is not None:
                summary.update({"run/status": status, "run/reason": reason or "", "run/last_step": trainer.global_step})
            experiment.finish(exit_code=exit_code)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The run finished: exit code 0."""
        self.finish(trainer, FINISHED, None, 0)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """The run failed or was interrupted: its status, reason and exit code."""
        self.finish(trainer, *classify(exception, trainer))
