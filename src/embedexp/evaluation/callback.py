"""Lightning callback: mteb clustering before training, every N epochs, and at the end of fit."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from embedexp.core.hardware import resolve_precision
from embedexp.evaluation.before_after import print_before_after
from embedexp.evaluation.clustering import MEAN_KEY, evaluate_clustering, write_results_table
from embedexp.evaluation.score_cache import ZeroShotScoreCache, configuration_key, task_set_record

log = logging.getLogger(__name__)


class ClusteringEvalCallback(L.Callback):
    """Scores the module's embedder on clustering tasks and logs `val/<task>` and `val/clustering_mean`."""

    def __init__(
        self,
        tasks: list | Mapping,
        every_n_epochs: int = 1,
        at_start: bool = True,
        batch_size: int = 32,
        precision: str = "auto",
        output_dir: str | None = None,
        zero_shot_cache_dir: str | None = None,
        cache_frozen_prefix: bool = True,
        dims: list | None = None,
    ) -> None:
        """`tasks`: mteb task objects (a dict's values are used; None entries, i.e. unavailable tasks, skipped).

        `zero_shot_cache_dir`: reuse the untrained model's scores of an identical configuration from disk.
        `precision`: autocast while encoding (auto, 32 or bf16; `auto` is resolved here, once).
        `cache_frozen_prefix`: keep the frozen layers' outputs for the evaluation texts, so evaluations after
        the first run only the trainable (LoRA) layers. `dims` (Matryoshka, default `loss.dims`): also score the
        first `d` dimensions of the embedding, re-normalised, as `val/<task>@<d>` and `val/clustering_mean@<d>`.
        """
        super().__init__()
        values = tasks.values() if isinstance(tasks, Mapping) else tasks
        self.tasks = [task for task in values if task is not None]
        if not self.tasks:
            raise ValueError("callbacks.clustering_eval.tasks: no clustering task could be built on this machine")
        self.every_n_epochs, self.at_start = every_n_epochs, at_start
        self.batch_size = batch_size
        self.precision = resolve_precision(precision, "eval.precision", "autocast")
        self.output_dir = output_dir
        self.score_cache = ZeroShotScoreCache(zero_shot_cache_dir) if zero_shot_cache_dir else None
        self.cache_frozen_prefix = cache_frozen_prefix
        self.dims = list(dims) if dims else []
        self.history: list[dict] = []
        self.seconds: list[float] = []

    @property
    def zero_shot(self) -> dict[str, float] | None:
        """Scores before any training step, if measured."""
        return next((row for row in self.history if row["stage"] == "zero_shot"), None)

    @property
    def task_set(self) -> dict:
        """The tasks scored: names, numbers of texts, hashes of texts and labels, and their set's id."""
        if getattr(self, "_task_set", None) is None:
            self._task_set = task_set_record(self.tasks)
        return self._task_set

    @property
    def final(self) -> dict[str, float] | None:
        """Most recent scores."""
        return self.history[-1] if self.history else None

    def _evaluate(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> dict[str, float]:
        """Score all tasks, remember the row, and write the results table."""
        start = time.perf_counter()
        embedder = module.embedder
        log.info("clustering evaluation (%s, %s): %d tasks", stage, self.precision, len(self.tasks))
        if self.cache_frozen_prefix and embedder.prefix_cache is None:
            embedder.enable_prefix_cache()
        key = (
            configuration_key(embedder, self.tasks, self.precision, self.dims)
            if stage == "zero_shot" and self.score_cache
            else None
        )
        scores = self.score_cache.get(key) if key else None
        if scores is None:
            scores = evaluate_clustering(embedder, self.tasks, None, self.batch_size, self.precision, self.dims)
            if key:
                self.score_cache.put(key, scores)
        else:
            log.info("zero-shot scores of this configuration read from the cache (%s)", key)
        row = {"stage": stage, "epoch": trainer.current_epoch, "step": trainer.global_step, **scores}
        self.history.append(row)
        self.seconds.append(time.perf_counter() - start)
        log.info("clustering (%s, %.0f s): %s", stage, self.seconds[-1], _format(scores))
        if self.output_dir:
            write_results_table(self.history, self.output_dir, task_set=self.task_set)
        return scores

    def run_metrics(self) -> dict:
        """What the run's metrics.json records of this evaluation: the final scores (`val/<task>`), the zero-shot ones
        (`zero_shot/<task>`) and the task set."""
        metrics: dict = {"task_set": self.task_set}
        timed = self.history[len(self.history) - len(self.seconds) :]  # a resumed run's earlier ones: not timed here
        for row, seconds in zip(timed, self.seconds):
            key = "time/eval_zero_shot_s" if row["stage"] == "zero_shot" else "time/eval_trained_s"
            metrics[key] = metrics.get(key, 0.0) + seconds
        if self.final is not None:
            metrics.update({f"val/{k}": v for k, v in _scores(self.final).items()})
            if self.zero_shot is not None:
                metrics.update({f"zero_shot/{k}": v for k, v in _scores(self.zero_shot).items()})
        return metrics

    def state_dict(self) -> dict:
        """Scores so far, saved in checkpoints (a resumed run does not re-score its start)."""
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the scores of the interrupted run."""
        self.history = list(state_dict.get("history", []))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Record the scored task set with the run's hyperparameters (W&B config, CSV hparams.yaml)."""
        for logger in trainer.loggers:
            logger.log_hyperparams({"task_set": self.task_set})

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Zero-shot scores of the untrained embedder (logged at step 0)."""
        if self.at_start and not self.history:
            scores = self._evaluate(trainer, pl_module, "zero_shot")
            for logger in trainer.loggers:
                logger.log_metrics({f"val/{k}": v for k, v in scores.items()}, step=0)
                logger.log_metrics({f"zero_shot/{k}": v for k, v in scores.items()}, step=0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Score every `every_n_epochs` epochs and log through the module (so checkpoints can monitor it)."""
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        scores = self._evaluate(trainer, pl_module, "epoch") if trainer.is_global_zero else {}
        if trainer.is_global_zero:
            pl_module.log_dict({f"val/{k}": v for k, v in scores.items()}, rank_zero_only=True)

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Score the final weights when the last epoch was not scored already."""
        if self.history and self.history[-1]["step"] == trainer.global_step:
            return
        scores = self._evaluate(trainer, pl_module, "fit_end")
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{k}": v for k, v in scores.items()}, step=trainer.global_step)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the zero-shot and final scores side by side."""
        if self.zero_shot is not None and self.final is not None:
            print_before_after(_scores(self.zero_shot), _scores(self.final))


def _scores(row: dict) -> dict[str, float]:
    """The scores of a history row (without its stage, epoch and step)."""
    return {k: v for k, v in row.items() if k not in ("stage", "epoch", "step")}


def _format(scores: dict[str, float]) -> str:
    """Compact one-line rendering of scores, mean first."""
    rest = ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != MEAN_KEY)
    return f"{MEAN_KEY}={scores.get(MEAN_KEY, float('nan')):.4f} ({rest})"
