"""The evaluation tasks' texts, indexed once (cached) so that no training pair repeats one, exactly or nearly.

`EvaluationTexts` reads every reference (whole files, not the tasks' samples: any text a task may draw) plus the
file-based tasks of the run's `tasks` config, and indexes them with `embedexp.data.overlap.OverlapIndex`. Pair sources
built by the project drop pairs that repeat an evaluation text (`drop`); `find` reports what any pair list repeats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedexp.core.atomic import atomic_file
from embedexp.core.errors import ConfigError, DataError, EmbedexpError
from embedexp.data.corpus_cache import cache_path
from embedexp.data.debian import CORPUS_VERSION, corpus_texts, load_corpus
from embedexp.data.overlap import Match, OverlapIndex
from embedexp.data.pairs import Pair
from embedexp.data.reader import read_texts

log = logging.getLogger(__name__)
INDEX_VERSION = 1
_LOADED: dict[Path, OverlapIndex] = {}  # indexes loaded by this process, by cache file


@dataclass
class Reference:
    """One set of evaluation texts: a column of a file (any format of `embedexp.data.reader`) or a field
    (`short` / `long`) of the Debian evaluation split. `task` names the evaluation task in messages."""

    task: str
    path: str | None = None
    column: str = "sentences"
    debian_field: str | None = None

    def describe(self) -> str:
        """What the texts are, for messages."""
        return f"Debian evaluation split, {self.debian_field}" if self.debian_field else f"{self.path}:{self.column}"

    def fingerprint(self, cache_dir: str) -> str:
        """Identifies the texts as they are now (file size and time), so a changed file rebuilds the index."""
        path = Path(self.path) if self.path else cache_path(cache_dir, "debian", CORPUS_VERSION)
        if self.debian_field and not path.is_file():
            load_corpus(cache_dir)
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        stat = path.stat()
        return f"{self.describe()}|{stat.st_size}|{stat.st_mtime_ns}"

    def texts(self, cache_dir: str) -> list[str]:
        """Every text of the reference."""
        if self.debian_field:
            return [r[self.debian_field] for r in corpus_texts(load_corpus(cache_dir), "eval", self.debian_field)]
        return read_texts(self.path, self.column, f"references.{self.task}", skip_empty=True)


def task_references(tasks: Mapping | None) -> dict[str, Reference]:
    """References for the file-based tasks of a `tasks` config (hub tasks cannot be read offline: warned)."""
    found = {}
    for key, node in (tasks or {}).items():
        node = node or {}
        target, name = str(node.get("_target_", "")).rsplit(".", 1)[-1], node.get("name", key)
        if target == "jsonl_task":
            found[f"tasks.{key}"] = Reference(name, path=str(node["path"]), column=node.get("text_field", "sentences"))
        elif target == "debian_section_task":
            found[f"tasks.{key}"] = Reference(name, debian_field=node.get("field", "short"))
        elif target:
            log.warning("contamination: task %s (tasks.%s) is not a local file; its texts are not checked", name, key)
    return found


@dataclass
class Hit:
    """A training text that repeats an evaluation text (`reference`: the key of the reference it repeats)."""

    origin: str
    text: str
    match: Match
    reference: str


@dataclass
class Findings:
    """Every hit of a pair list."""

    pairs: int
    texts: int
    hits: list[Hit] = field(default_factory=list)
    unchecked: dict[str, str] = field(default_factory=dict)  # reference key -> why it could not be read
    seconds: float = 0.0

    def counts(self, tasks: Mapping[str, str]) -> dict[str, dict[str, dict[str, int]]]:
        """{origin: {task: {'exact': n, 'near': n}}}."""
        counts: dict = defaultdict(lambda: defaultdict(Counter))
        for hit in self.hits:
            counts[hit.origin][tasks[hit.reference]][hit.match.kind] += 1
        return {o: {t: dict(c) for t, c in by_task.items()} for o, by_task in counts.items()}


def plain(node) -> dict:
    """A config node as a plain dict (resolved), or the mapping itself."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


class EvaluationTexts:
    """The evaluation texts no training pair may repeat: the configured references and the run's file-based tasks."""

    def __init__(
        self,
        references: Mapping | None = None,
        tasks: Mapping | None = None,
        threshold: float = 0.8,
        num_perm: int = 128,
        cache_dir: str = ".cache/embedexp",
    ) -> None:
        """`references`: {key: {task, path, column} or {task, debian_field}}; `tasks`: a `tasks` config."""
        self.references: dict[str, Reference] = {}
        for key, spec in plain(references).items():
            try:
                self.references[key] = Reference(**spec)
            except TypeError as err:
                raise ConfigError(f"contamination.texts.references.{key}: {err}") from err
        known = {(r.path, r.column, r.debian_field) for r in self.references.values()}
        for key, ref in task_references(plain(tasks)).items():
            if (ref.path, ref.column, ref.debian_field) not in known:
                self.references[key] = ref
        self.threshold, self.num_perm, self.cache_dir = threshold, num_perm, cache_dir
        self.unchecked: dict[str, str] = {}
        self.dropped: dict[str, Counter] = {}  # origin -> (task, kind) -> pairs dropped by `drop`
        self._index: OverlapIndex | None = None

    def task_names(self) -> dict[str, str]:
        """Reference key -> task name."""
        return {key: ref.task for key, ref in self.references.items()}

    def index(self) -> OverlapIndex:
        """The index of every readable reference, built once per set of inputs and cached under `cache_dir`."""
        if self._index is not None:
            return self._index
        readable = {}
        for key, ref in sorted(self.references.items()):
            try:
                readable[key] = ref.fingerprint(self.cache_dir)
            except EmbedexpError as err:
                self.unchecked[key] = str(err)
                log.warning(
                    "contamination: cannot read %s (%s): %s; training texts are not checked against it",
                    key,
                    ref.task,
                    err,
                )
        settings = [INDEX_VERSION, self.threshold, self.num_perm, sorted(readable.items())]
        digest = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:16]
        path = Path(self.cache_dir) / "contamination" / f"index-{digest}.pkl"
        if path not in _LOADED:
            _LOADED[path] = self._load_or_build(path, readable)
        self._index = _LOADED[path]
        return self._index

    def _load_or_build(self, path: Path, readable: Mapping[str, str]) -> OverlapIndex:
        """Unpickle the cached index, or index every readable reference and cache it atomically."""
        start = time.perf_counter()
        if path.is_file():
            with open(path, "rb") as handle:
                index = pickle.load(handle)
            log.info("contamination: %d evaluation texts loaded in %.1f s", len(index), time.perf_counter() - start)
            return index
        index = OverlapIndex(self.threshold, self.num_perm)
        for key in readable:
            for text in self.references[key].texts(self.cache_dir):
                index.add(text, key)
        with atomic_file(path) as staging, open(staging, "wb") as handle:
            pickle.dump(index, handle, protocol=pickle.HIGHEST_PROTOCOL)
        log.info(
            "contamination: %d evaluation texts of %d references indexed in %.1f s, cached at %s",
            len(index),
            len(readable),
            time.perf_counter() - start,
            path,
        )
        return index

    def find(self, pairs: Sequence[Pair], origins: Sequence[str] | str) -> Findings:
        """Every text of `pairs` (anchor, positive, hard negatives) that repeats an evaluation text."""
        start, index = time.perf_counter(), self.index()
        origins = [origins] * len(pairs) if isinstance(origins, str) else origins
        found = Findings(len(pairs), 0, unchecked=dict(self.unchecked))
        for pair, origin in zip(pairs, origins):
            for text in pair_texts(pair):
                found.texts += 1
                match = index.find(text)
                if match is not None:
                    found.hits.append(Hit(origin, text, match, index.labels[match.entry]))
        found.seconds = time.perf_counter() - start
        return found

    def drop(self, pairs: Iterable[Pair], origin: str, limit: int | None = None) -> list[Pair]:
        """The first `limit` pairs none of whose texts repeats an evaluation text; drops logged by task and kind."""
        index = self.index()
        kept, dropped, seen = [], Counter(), 0
        for pair in pairs:
            if limit is not None and len(kept) >= limit:
                break
            seen += 1
            match = next((m for m in map(index.find, pair_texts(pair)) if m is not None), None)
            if match is None:
                kept.append(pair)
            else:
                dropped[(self.references[index.labels[match.entry]].task, match.kind)] += 1
        self.dropped[origin] = dropped
        if dropped:
            detail = ", ".join(f"{task} {kind} {n}" for (task, kind), n in sorted(dropped.items()))
            log.info(
                "%s: dropped %d of %d pairs repeating evaluation texts (%s)",
                origin,
                sum(dropped.values()),
                seen,
                detail,
            )
        return kept

    def describe(self, findings: Findings, examples: int = 3) -> dict:
        """A JSON-ready summary: counts by origin, task and kind, a few examples each, what could not be checked."""
        index, tasks = self.index(), self.task_names()
        shown: dict = defaultdict(list)
        for hit in findings.hits:
            key = f"{hit.origin} ~ {tasks[hit.reference]}"
            if len(shown[key]) < examples:
                shown[key].append(
                    {
                        "training_text": hit.text[:300],
                        "evaluation_text": index.texts[hit.match.entry],
                        "kind": hit.match.kind,
                        "similarity": round(hit.match.similarity, 3),
                    }
                )
        return {
            "pairs": findings.pairs,
            "texts": findings.texts,
            "contaminated_texts": len(findings.hits),
            "counts": findings.counts(tasks),
            "examples": dict(shown),
            "references": {key: ref.describe() for key, ref in sorted(self.references.items())},
            "unchecked": findings.unchecked,
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "evaluation_texts": len(index),
            "seconds": round(findings.seconds, 2),
        }


def pair_texts(pair: Pair) -> list[str]:
    """The anchor, the positive and any hard negatives of a pair."""
    return [pair[0], pair[1], *(pair[2] if len(pair) > 2 else ())]


def contamination_error(summary: dict) -> DataError:
    """One error naming each contaminated source and the tasks it repeats, with an example."""
    parts = []
    for origin, by_task in sorted(summary["counts"].items()):
        for task, kinds in sorted(by_task.items()):
            example = summary["examples"][f"{origin} ~ {task}"][0]
            parts.append(
                f"{origin}: {sum(kinds.values())} training texts repeat {task} texts "
                f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), e.g. {example['training_text']!r} ~ "
                f"{example['evaluation_text'][:120]!r}"
            )
    return DataError(
        "training data contaminated with evaluation texts: "
        + "; ".join(parts)
        + ". Remove those pairs (or the source); `python -m embedexp contamination <run> <file>` lists them."
    )
