"""Pair sources built from what this machine has installed: each builds its records once (cached), then samples.

A subclass sets `name`, `version` and `build()` (records `{"text", "text_pos", "family"}`, where `family` groups
near-identical material such as all pages of one program). `load()` shuffles by `seed`, drops repeated and
near-duplicate anchors, keeps at most `max_per_family` pairs of one family, drops pairs repeating an evaluation text
(`exclude`: `embedexp.data.contamination.EvaluationTexts`) and stops at `max_pairs`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.corpus_cache import cached_records
from embedexp.data.overlap import OverlapIndex
from embedexp.data.pairs import Pair, first_pairs

log = logging.getLogger(__name__)
LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def prose(text: str, min_words: int, max_chars: int = 1000, min_alpha: float = 0.6) -> bool:
    """Whether a text reads as prose: enough words, not too long, mostly letters (not code, tables or markup)."""
    compact = "".join(text.split())
    if len(text.split()) < min_words or len(text) > max_chars or not compact:
        return False
    return len(LETTER.findall(compact)) / len(compact) >= min_alpha


def capped_by_family(items: list, family: Callable[[object], str], name: Callable[[object], str], cap: int) -> list:
    """At most `cap` items of each family: those whose names hash lowest (the same choice on every build)."""
    families: dict[str, list] = {}
    for item in items:
        families.setdefault(family(item), []).append(item)
    chosen = []
    for members in families.values():
        chosen += sorted(members, key=lambda item: hashlib.sha1(name(item).encode()).hexdigest())[:cap]
    return sorted(chosen, key=name)


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces."""
    return " ".join(text.split())


@dataclass
class CorpusPairs:
    """Base of the built sources: cached records, then a seeded, deduplicated, family-capped, decontaminated sample."""

    max_pairs: int | None = None
    max_per_family: int | None = None
    seed: int = 0
    cache_dir: str = ".cache/embedexp"
    exclude: object | None = None  # EvaluationTexts: drop pairs that repeat an evaluation text
    origin: str = "data.source"  # the config key, in messages

    name: ClassVar[str] = "corpus"
    version: ClassVar[int] = 1

    def build(self) -> list[dict]:
        """Every record this machine yields (subclasses)."""
        raise NotImplementedError

    def cache_name(self) -> str:
        """The cache folder of the records (under `cache_dir`): the source's name, plus what changes its records."""
        return self.name

    def records(self) -> list[dict]:
        """The built records, from the cache after the first build."""
        return cached_records(self.cache_dir, self.cache_name(), self.version, self.build)

    def candidates(self) -> Iterator[Pair]:
        """Shuffled pairs without repeated or near-duplicate anchors, at most `max_per_family` per family."""
        records = self.records()
        if not records:
            raise DataError(f"{self.origin}: the {self.name} source found no pairs on this machine")
        order = list(range(len(records)))
        random.Random(self.seed).shuffle(order)
        seen, families = OverlapIndex(), Counter()
        for i in order:
            record = records[i]
            family = record.get("family", "")
            if self.max_per_family and families[family] >= self.max_per_family:
                continue
            if seen.find(record["text"]) is not None:
                continue
            seen.add(record["text"], family)
            families[family] += 1
            yield record["text"], record["text_pos"]

    def load(self) -> list[Pair]:
        """Up to `max_pairs` pairs (all with null), none repeating an evaluation text when `exclude` is set."""
        pairs = first_pairs(self.candidates(), self.exclude, self.origin, self.max_pairs)
        log.info("%s: %d %s pairs", self.origin, len(pairs), self.name)
        return pairs
