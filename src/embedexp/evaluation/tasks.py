"""Clustering tasks as mteb tasks: local labelled text (offline) and mteb's own tasks by name (hub)."""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections import Counter
from pathlib import Path

from datasets import Dataset, DatasetDict
from mteb.abstasks.clustering import AbsTaskClustering
from mteb.abstasks.task_metadata import TaskMetadata
from omegaconf import DictConfig

from embedexp.core.errors import ConfigError, DataError, MissingTaskData
from embedexp.core.instantiate import instantiate_node
from embedexp.data.debian import corpus_texts, load_corpus

log = logging.getLogger(__name__)
SHARED_DATA_HINT = (
    "Build the shared clustering data once (needs internet): `python -m embedexp fetch_shared --out <folder>` "
    "and set EMBEDEXP_SHARED_DATA=<folder> (default: ../shared/clustering_data beside the checkout); or score the "
    "Debian tasks only with `tasks=offline_debian`."
)

# Debian sections that describe packaging form (library, docs, debug symbols) rather than topic.
FORM_SECTIONS = (
    "libs",
    "libdevel",
    "doc",
    "debug",
    "oldlibs",
    "metapackages",
    "introspection",
    "tasks",
    "localization",
)


class LocalClusteringTask(AbsTaskClustering):
    """An mteb v2 clustering task over texts and labels held in memory; every text is embedded once.

    mteb reads `metadata` from the class, so `make_local_task` creates one subclass per task.
    """

    max_fraction_of_documents_to_embed = None
    max_document_to_embed = None
    rows: dict[str, list[str]] = {}

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        """Wrap the in-memory rows as the task's `test` split."""
        if not self.data_loaded:
            self.dataset = DatasetDict({"test": Dataset.from_dict(self.rows)})
            self.data_loaded = True


def make_local_task(
    name: str, sentences: list[str], labels: list[str], description: str, *, n_kmeans_runs: int = 10, seed: int = 42
) -> LocalClusteringTask:
    """Build a clustering task whose V-measure is mteb's mean over `n_kmeans_runs` k-means runs, each on a bootstrap
    sample (drawn with replacement) as large as the task."""
    metadata = TaskMetadata(
        name=name,
        description=description,
        reference="https://github.com/embedexp/embedexp",
        dataset={"path": f"local/{name}", "revision": "local"},
        type="Clustering",
        category="t2c",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="v_measure",
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators="derived",
        dialect=None,
        sample_creation="found",
        bibtex_citation="",
    )
    attributes = dict(
        metadata=metadata,
        rows={"sentences": list(sentences), "labels": list(labels)},
        n_clusters=n_kmeans_runs,  # mteb's name for the number of k-means runs (scored and averaged), not of clusters
        max_documents_per_cluster=len(sentences),
    )
    task_class = type(name.replace(".", "_"), (LocalClusteringTask,), attributes)
    return task_class(seed=seed)


def kmeans_runs(n_kmeans_runs: int, n_bootstrap: int | None, name: str) -> int:
    """`n_kmeans_runs`, or the value of the key's old name `n_bootstrap` (still read, with a warning)."""
    if n_bootstrap is None:
        return n_kmeans_runs
    log.warning("task %s: n_bootstrap is now called n_kmeans_runs (mteb's n_clusters); reading it as such", name)
    return n_bootstrap


def balanced_sample(
    rows: list[tuple[str, str]], *, n_docs: int, n_labels: int, min_per_label: int, seed: int
) -> list[tuple[str, str]]:
    """Keep the `n_labels` most frequent labels with at least `min_per_label` rows, then sample `n_docs` rows."""
    counts = Counter(label for _, label in rows)
    keep = {label for label, count in counts.most_common(n_labels) if count >= min_per_label}
    kept = sorted({(text, label) for text, label in rows if label in keep})
    random.Random(seed).shuffle(kept)
    return kept[:n_docs]


def _task_from_rows(
    name: str, rows: list[tuple[str, str]], description: str, *, n_kmeans_runs: int
) -> LocalClusteringTask:
    """Build a task from (text, label) rows."""
    if len({label for _, label in rows}) < 2:
        raise DataError(f"task {name}: needs at least two labels, got {len(rows)} rows")
    texts, labels = zip(*rows)
    return make_local_task(name, list(texts), list(labels), description, n_kmeans_runs=n_kmeans_runs)


def debian_section_task(
    name: str,
    *,
    field: str = "short",
    n_docs: int = 1000,
    n_sections: int = 20,
    min_per_section: int = 30,
    exclude_sections: tuple[str, ...] = FORM_SECTIONS,
    seed: int = 0,
    n_kmeans_runs: int = 10,
    n_bootstrap: int | None = None,
    cache_dir: str = ".cache/embedexp",
    optional: bool = False,
) -> LocalClusteringTask | None:
    """Debian package descriptions (`short` summary or `long` text) clustered by archive section, eval split only.

    Without Debian package lists on this machine: an error, or None (the task is left out) when `optional`.
    """
    records = corpus_texts(load_corpus(cache_dir), "eval", field)
    rows = [(r[field], r["section"]) for r in records if r["section"] not in set(exclude_sections)]
    if not rows:
        if not optional:
            raise MissingTaskData(name, "/var/lib/apt/lists/*_Packages", "This task needs a Debian or Ubuntu machine.")
        log.warning("optional task %s left out: no Debian %s descriptions on this machine", name, field)
        return None
    rows = balanced_sample(rows, n_docs=n_docs, n_labels=n_sections, min_per_label=min_per_section, seed=seed)
    description = f"Debian package {field} descriptions clustered by archive section."
    return _task_from_rows(name, rows, description, n_kmeans_runs=kmeans_runs(n_kmeans_runs, n_bootstrap, name))


def jsonl_task(
    name: str,
    path: str,
    *,
    text_field: str = "sentences",
    label_field: str = "labels",
    n_docs: int = 1000,
    n_labels: int = 50,
    min_per_label: int = 2,
    seed: int = 0,
    n_kmeans_runs: int = 10,
    n_bootstrap: int | None = None,
    description: str = "",
    optional: bool = False,
) -> LocalClusteringTask | None:
    """A clustering task from a (gzipped) JSON Lines file of labelled texts.

    An absent file is an error, unless `optional`: then the task is left out (None) with a warning, and the run
    records the smaller task set it scored.
    """
    file = Path(path)
    if not file.is_file():
        if not optional:
            raise MissingTaskData(name, str(file), SHARED_DATA_HINT)
        log.warning("optional task %s left out: %s not found", name, file)
        return None
    opener = gzip.open if file.suffix == ".gz" else open
    rows = []
    with opener(file, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                text, label = record[text_field], str(record[label_field])
            except (json.JSONDecodeError, KeyError) as err:
                raise DataError(f"{file}: line {line_no}: bad record ({err})") from err
            if isinstance(text, str) and text.strip():
                rows.append((text.strip(), label))
    rows = balanced_sample(rows, n_docs=n_docs, n_labels=n_labels, min_per_label=min_per_label, seed=seed)
    description = description or f"Texts of {file.name} clustered by {label_field}."
    return _task_from_rows(name, rows, description, n_kmeans_runs=kmeans_runs(n_kmeans_runs, n_bootstrap, name))


def mteb_task(name: str):
    """An official mteb task by name (its data comes from the Hugging Face Hub); unknown names list close ones."""
    import difflib

    import mteb

    try:
        return mteb.get_task(name)
    except KeyError as err:
        known = [task.metadata.name for task in mteb.get_tasks(task_types=["Clustering"])]
        close = difflib.get_close_matches(name, known, n=8, cutoff=0.5) or sorted(known)[:20]
        raise ConfigError(f"tasks: unknown mteb task '{name}'; clustering tasks like it: {', '.join(close)}") from err


def build_tasks(tasks_cfg: DictConfig) -> list:
    """Instantiate the task list of a `tasks` config; optional tasks whose data is absent here are left out."""
    tasks = [task for task in (instantiate_node(node, tasks_cfg) for node in tasks_cfg.values()) if task is not None]
    if not tasks:
        raise ConfigError("tasks: none of the configured clustering tasks could be built on this machine")
    return tasks
