"""Score one embedder on the same tasks at several sizes (n_docs), encoding every text once.

The local tasks draw their texts by a seeded shuffle that does not depend on `n_docs`, so the task at `n` texts is
the first `n` texts of the task at any larger size. `score_at_sizes` builds those prefix tasks, encodes each new
text once (smallest size first, timed), and scores every size through `mteb.evaluate` like the callback does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from mteb.models.abs_encoder import AbsEncoder

from embedexp.core.compat import reset_task_rngs
from embedexp.core.hardware import autocast_for
from embedexp.evaluation.clustering import MEAN_KEY, score_tasks
from embedexp.evaluation.mteb_encoder import model_meta
from embedexp.evaluation.tasks import LocalClusteringTask, make_local_task
from embedexp.model.embedder import Embedder

SIZE_COLUMNS = ["n_docs", "metric", "value", "seconds"]


def prefix_task(task: LocalClusteringTask, n_docs: int) -> LocalClusteringTask:
    """The same task with its first `n_docs` texts (all of them if it has fewer)."""
    rows = task.rows
    return make_local_task(
        task.metadata.name,
        rows["sentences"][:n_docs],
        rows["labels"][:n_docs],
        task.metadata.description,
        n_kmeans_runs=task.n_clusters,
        seed=task.seed,
    )


class PrecomputedEncoder(AbsEncoder):
    """Hands mteb embeddings computed beforehand (text → vector)."""

    def __init__(self, vectors: dict[str, np.ndarray], mteb_model_meta) -> None:
        """`vectors` must hold every text of the tasks it is evaluated on."""
        self.vectors, self.mteb_model_meta = vectors, mteb_model_meta

    def encode(
        self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None, **kwargs: Any
    ) -> np.ndarray:
        """Look up the vectors of all texts of the dataloader."""
        return np.stack([self.vectors[text] for batch in inputs for text in batch["text"]])


def score_at_sizes(
    embedder: Embedder,
    tasks: Sequence[LocalClusteringTask],
    sizes: Sequence[int],
    batch_size: int = 32,
    precision: str = "auto",
) -> pd.DataFrame:
    """Long table (n_docs, metric, value, seconds): every task's V-measure and `clustering_mean` at every size.

    `seconds` (on the `clustering_mean` rows) is what scoring that size alone would cost: encoding its texts plus
    mteb's clustering, i.e. an epoch-end callback with `tasks.*.n_docs=<n_docs>`.
    """
    vectors: dict[str, np.ndarray] = {}
    encode_seconds, rows = 0.0, []
    for n_docs in sorted(set(int(n) for n in sizes)):
        new = list(dict.fromkeys(t for task in tasks for t in task.rows["sentences"][:n_docs] if t not in vectors))
        start = time.perf_counter()
        if new:
            with autocast_for(precision, embedder.device):
                vectors.update(zip(new, embedder.encode(new, batch_size=batch_size)))
        encode_seconds += time.perf_counter() - start
        subset = [prefix_task(task, n_docs) for task in tasks]
        reset_task_rngs(subset)  # as evaluate_clustering: a score depends on the embeddings alone
        meta = model_meta(embedder, embedder.name, int(next(iter(vectors.values())).shape[0]))
        start = time.perf_counter()
        scores = score_tasks(PrecomputedEncoder(vectors, meta), subset)
        cost = encode_seconds + time.perf_counter() - start
        for metric, value in scores.items():
            rows.append(dict(n_docs=n_docs, metric=metric, value=value, seconds=cost if metric == MEAN_KEY else None))
    return pd.DataFrame(rows, columns=SIZE_COLUMNS)
