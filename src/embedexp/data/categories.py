"""Same-category positives (NV-Embed's example-based pairs): a text and *another* text of the same offline label.

A subclass sets `name` and `category_records()`: records `{"text", "category", "family"}`, where `category` is the
label two texts must share to pair up (a debtag, a manual section, a Python package, a part of speech) and `family`
groups near-identical material that must not pair with itself (the binary packages of one source package, the pages
of one program). `load()` drops repeated and near-duplicate texts, keeps categories with texts from at least two
families, draws one anchor after another (seeded by `seed`, at most `max_per_category` of one category) and pairs
each with a random text of its category from another family; pairs repeating an evaluation text are dropped
(`exclude`: `embedexp.data.contamination.EvaluationTexts`) and the draw stops at `max_pairs`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.overlap import OverlapIndex
from embedexp.data.pairs import Pair, first_pairs

log = logging.getLogger(__name__)


def group_by_category(records: list[dict], min_families: int = 2) -> dict[str, list[dict]]:
    """{category: its records} for the categories whose records come from at least `min_families` families."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["category"], []).append(record)
    return {k: v for k, v in groups.items() if len({r.get("family", r["text"]) for r in v}) >= min_families}


def partner(members: list[dict], anchor: dict, rng: random.Random, tries: int = 20) -> dict | None:
    """A random member of the anchor's category from another family (None: none found in `tries` draws)."""
    family = anchor.get("family", anchor["text"])
    for _ in range(tries):
        other = members[rng.randrange(len(members))]
        if other is not anchor and other.get("family", other["text"]) != family:
            return other
    others = [m for m in members if m.get("family", m["text"]) != family]
    return rng.choice(others) if others else None


@dataclass
class CategoryPairs:
    """Base of the same-category sources: deduplicated texts, grouped by label, anchors paired within their label."""

    max_pairs: int | None = None
    max_per_category: int | None = None  # anchors of one category (a large one would fill the batches alone)
    seed: int = 0
    cache_dir: str = ".cache/embedexp"
    exclude: object | None = None  # EvaluationTexts: drop pairs that repeat an evaluation text
    origin: str = "data.source"  # the config key, in messages

    name: ClassVar[str] = "category"

    def category_records(self) -> list[dict]:
        """Every labelled text this machine yields (subclasses)."""
        raise NotImplementedError

    def texts(self) -> list[dict]:
        """The labelled records without empty, repeated or near-duplicate texts (the first of each kept)."""
        seen, kept = OverlapIndex(), []
        for record in self.category_records():
            if record["text"].strip() and record["category"] and seen.add_if_new(record["text"]) is None:
                kept.append(record)
        return kept

    def candidates(self) -> Iterator[Pair]:
        """(anchor, another text of its category): anchors in seeded order, at most `max_per_category` per label."""
        groups = group_by_category(self.texts())
        if not groups:
            raise DataError(
                f"{self.origin}: the {self.name} source found no category with texts of two families on this machine"
            )
        rng = random.Random(self.seed)
        anchors = [record for members in groups.values() for record in members]
        rng.shuffle(anchors)
        used: Counter = Counter()
        for anchor in anchors:
            category = anchor["category"]
            if self.max_per_category and used[category] >= self.max_per_category:
                continue
            other = partner(groups[category], anchor, rng)
            if other is not None:
                used[category] += 1
                yield anchor["text"], other["text"]

    def load(self) -> list[Pair]:
        """Up to `max_pairs` pairs (all with null), none repeating an evaluation text when `exclude` is set."""
        pairs = first_pairs(self.candidates(), self.exclude, self.origin, self.max_pairs)
        log.info("%s: %d same-%s pairs", self.origin, len(pairs), self.name)
        return pairs
