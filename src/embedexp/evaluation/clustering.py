"""Run clustering tasks on an embedder with `mteb.evaluate` and write result tables."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import mteb
import numpy as np
import pandas as pd

from embedexp.core.atomic import atomic_write_text
from embedexp.core.compat import reset_task_rngs
from embedexp.core.errors import ConfigError
from embedexp.evaluation.mteb_encoder import MtebEncoder
from embedexp.evaluation.prefix import PrefixEncoder, dim_key, usable_dims
from embedexp.model.embedder import Embedder

log = logging.getLogger(__name__)
MEAN_KEY = "clustering_mean"
LABEL_COLUMNS = ("model", "pooling", "prompt", "stage", "epoch", "step", "task_set")


def evaluate_clustering(
    embedder: Embedder,
    tasks: list,
    name: str | None = None,
    batch_size: int = 32,
    precision: str = "auto",
    dims: Sequence[int | str | None] | None = None,
) -> dict[str, float]:
    """V-measure of every task (mteb's main score) and their mean under `clustering_mean`.

    Each task's bootstrap RNG is reset first, so a score depends on the embeddings alone, not on how many
    evaluations ran before (a resumed run scores exactly like an uninterrupted one). `dims` (Matryoshka): also
    score the first `d` dimensions, re-normalised, as `<task>@<d>` and `clustering_mean@<d>` (texts embedded once).
    """
    if not dims:
        reset_task_rngs(tasks)
        encoder = MtebEncoder(embedder, name=name or embedder.name, batch_size=batch_size, precision=precision)
        return score_tasks(encoder, tasks)
    encoder = PrefixEncoder(embedder, name=name or embedder.name, batch_size=batch_size, precision=precision)
    reset_task_rngs(tasks)
    scores = score_tasks(encoder, tasks)
    for dim in usable_dims(dims, int(encoder.mteb_model_meta.embed_dim)):
        encoder.dim = dim
        reset_task_rngs(tasks)
        scores.update({dim_key(key, dim): value for key, value in score_tasks(encoder, tasks).items()})
    return scores


def score_tasks(encoder, tasks: list, encode_kwargs: dict | None = None) -> dict[str, float]:
    """Main score of every task for any mteb encoder (e.g. an exported model) and their mean (`clustering_mean`).

    `encode_kwargs` go to mteb, which passes them to the encoder's `encode` (e.g. a SentenceTransformer's).
    """
    result = mteb.evaluate(
        encoder, tasks, cache=None, show_progress_bar=False, overwrite_strategy="always", encode_kwargs=encode_kwargs
    )
    scores = {task_result.task_name: float(task_result.get_score()) for task_result in result.task_results}
    scores[MEAN_KEY] = float(np.mean(list(scores.values())))
    return scores


def write_results_table(
    rows: list[dict], folder: str | os.PathLike, stem: str = "clustering_results", task_set: dict | None = None
) -> tuple[Path, Path]:
    """Write rows (one per evaluation) as `<stem>.csv` and a Markdown table `<stem>.md`, task columns sorted.

    `task_set` (`score_cache.task_set_record`): its id becomes a `task_set` column, and the Markdown lists its tasks.
    """
    frame = pd.DataFrame(rows)
    if task_set:
        frame["task_set"] = task_set["id"]
    leading = [c for c in LABEL_COLUMNS if c in frame.columns]
    score_columns = sorted(c for c in frame.columns if c not in LABEL_COLUMNS and c != MEAN_KEY)
    frame = frame[leading + score_columns + ([MEAN_KEY] if MEAN_KEY in frame.columns else [])]
    csv_path = atomic_write_text(Path(folder) / f"{stem}.csv", frame.to_csv(index=False))
    markdown = frame.to_markdown(index=False, floatfmt=".4f") + "\n"
    if task_set:
        markdown += f"\nTask set {task_set['id']}: " + describe_tasks(task_set) + "\n"
    md_path = atomic_write_text(Path(folder) / f"{stem}.md", markdown)
    return md_path, csv_path


def read_results_row(csv: str | os.PathLike) -> tuple[dict, dict[str, float]]:
    """(labels, scores) of the last row of a `write_results_table` CSV: its label columns, and its numeric others."""
    table = pd.read_csv(csv)
    if table.empty:
        raise ConfigError(f"{csv}: an empty results table")
    row = table.iloc[-1]
    labels = {k: row[k] for k in LABEL_COLUMNS if k in row.index and not pd.isna(row[k])}
    scores = {
        str(k): float(v)
        for k, v in row.items()
        if k not in LABEL_COLUMNS and isinstance(v, int | float) and not math.isnan(v)
    }
    return labels, scores


def describe_tasks(task_set: dict) -> str:
    """`TaskA (300 texts, hash 1a2b…), TaskB (…)` of a task set record."""
    return ", ".join(f"{t['name']} ({t['n_texts']} texts, hash {t['hash']})" for t in task_set["tasks"])
