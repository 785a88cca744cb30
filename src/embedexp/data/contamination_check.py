"""The check at the start of every training run: no training pair may repeat an evaluation text."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import lightning as L

from embedexp.core.atomic import atomic_write_text
from embedexp.data.contamination import EvaluationTexts, contamination_error

log = logging.getLogger(__name__)
RESULT_FILE = "contamination.json"


def datamodule_pairs(datamodule) -> tuple[list, list[str]]:
    """The training and validation pairs of a set-up PairDataModule, and the source key of each."""
    pairs = list(datamodule.train_set.pairs) + (list(datamodule.val_set.pairs) if datamodule.val_set else [])
    origins = list(getattr(datamodule, "train_origins", [])) + list(getattr(datamodule, "val_origins", []))
    return pairs, origins if len(origins) == len(pairs) else ["data.source"] * len(pairs)


class ContaminationCheck(L.Callback):
    """Checks every pair text (anchor, positive, negatives) against the evaluation texts once the data is loaded,
    writes `contamination.json` into the run folder, and stops the run with an error naming the source and task
    when any text repeats an evaluation text."""

    def __init__(
        self, texts: EvaluationTexts, enabled: bool = True, output_dir: str | None = None, examples: int = 3
    ) -> None:
        """`texts`: the evaluation texts; `enabled=false` skips the check (logged)."""
        self.texts, self.enabled, self.output_dir, self.examples = texts, enabled, output_dir, examples

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Runs after the DataModule's setup, before any evaluation or step."""
        if stage != "fit":
            return
        if not self.enabled:
            log.warning("contamination check disabled (contamination.enabled=false): training pairs are not checked")
            return
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "train_set", None) is None:
            log.warning("contamination check: no PairDataModule with loaded pairs; nothing checked")
            return
        pairs, origins = datamodule_pairs(datamodule)
        summary = self.texts.describe(self.texts.find(pairs, origins), self.examples)
        summary["sources"] = dict(Counter(origins))
        summary["dropped_by_sources"] = dict(getattr(datamodule, "dropped", None) or {})  # before this check
        if self.output_dir and trainer.is_global_zero:
            atomic_write_text(Path(self.output_dir) / RESULT_FILE, json.dumps(summary, indent=2, ensure_ascii=False))
        if summary["contaminated_texts"]:
            raise contamination_error(summary)
        log.info(
            "contamination check: %d texts of %d pairs, none repeats any of %d evaluation texts (%.1f s)",
            summary["texts"],
            summary["pairs"],
            summary["evaluation_texts"],
            summary["seconds"],
        )
