"""Quality filters for synthetic pairs: length and language bounds, copies, duplicates, contamination, false negatives.

Filters that look at the anchor alone run once over the source texts (before any generation is spent on them);
filters that need the positive run on each shard's pairs. Every drop is counted under the filter's name.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from embedexp.core.errors import ConfigError
from embedexp.data.overlap import OverlapIndex
from embedexp.synthesis.text import copy_key, normalise, stable_hash, word_ngrams

log = logging.getLogger(__name__)


@dataclass
class LengthBounds:
    """Word and character bounds for every text, and the largest word-count ratio between the two sides of a pair."""

    min_words: int = 3
    max_words: int = 64
    min_chars: int = 8
    max_chars: int = 1000
    max_ratio: float | None = 3.0

    def ok(self, text: str) -> bool:
        """Whether a single text is within the bounds."""
        n_words, n_chars = len(text.split()), len(text.strip())
        return self.min_words <= n_words <= self.max_words and self.min_chars <= n_chars <= self.max_chars

    def ratio_ok(self, anchor: str, positive: str) -> bool:
        """Whether the two sides' word counts are within a factor `max_ratio` of each other."""
        if not self.max_ratio:
            return True
        a, b = max(1, len(anchor.split())), max(1, len(positive.split()))
        return max(a, b) / min(a, b) <= self.max_ratio


def language_ratios(text: str) -> tuple[float, float]:
    """(letters / non-space characters, Latin-script letters / letters) of a text."""
    chars = [c for c in text if not c.isspace()]
    letters = [c for c in chars if c.isalpha()]
    if not letters:
        return 0.0, 0.0
    latin = sum(unicodedata.name(c, "").startswith("LATIN") for c in letters)
    return len(letters) / len(chars), latin / len(letters)


@dataclass
class LanguageBounds:
    """Drop texts that are mostly not prose (`min_alpha_ratio`) or mostly not in Latin script (`min_latin_ratio`)."""

    min_alpha_ratio: float = 0.6
    min_latin_ratio: float = 0.9

    def ok(self, text: str) -> bool:
        """Whether the text's letter and script ratios are within bounds."""
        alpha, latin = language_ratios(text)
        return alpha >= self.min_alpha_ratio and latin >= self.min_latin_ratio


class ContaminationIndex:
    """The evaluation texts, for dropping any text that repeats one: normalised exact match or word n-gram overlap.

    A text is contaminated when its normalised form equals an evaluation text's, or when at least `threshold`
    of its word `ngram`-grams occur in the evaluation texts (texts shorter than `ngram` words: exact match only).
    """

    def __init__(self, eval_texts: list[str], ngram: int = 8, threshold: float = 0.5) -> None:
        """Index the evaluation texts."""
        if ngram < 1 or not 0.0 < threshold <= 1.0:
            raise ConfigError(
                f"filters.contamination: ngram must be >= 1 and threshold in (0, 1], got {ngram}, {threshold}"
            )
        self.ngram, self.threshold = ngram, threshold
        self.exact = {normalise(t) for t in eval_texts}
        self.grams = {stable_hash(g) for t in eval_texts for g in word_ngrams(t, ngram)}
        self.size = len(eval_texts)

    def check(self, text: str) -> str | None:
        """'exact' or 'ngram' when the text is contaminated, else None."""
        if normalise(text) in self.exact:
            return "exact"
        grams = word_ngrams(text, self.ngram)
        if grams and sum(stable_hash(g) in self.grams for g in grams) / len(grams) >= self.threshold:
            return "ngram"
        return None


@dataclass
class DedupConfig:
    """Exact (normalised) and near-duplicate (shingle Jaccard >= threshold) removal."""

    exact: bool = True
    near: bool = True
    threshold: float = 0.7
    shingle: str = "char"
    n: int = 5

    def index(self) -> OverlapIndex:
        """A fresh index with these settings."""
        return OverlapIndex(self.threshold, shingle=self.n, kind=self.shingle)


@dataclass
class FalseNegativeConfig:
    """Flag pairs whose anchor near-duplicates an earlier anchor of the same batch (`batch_size` null: anywhere)."""

    enabled: bool = False
    threshold: float = 0.5
    shingle: str = "word"
    n: int = 1
    batch_size: int | None = 16
    action: str = "flag"  # flag: keep the pair with fn_flag=True; drop: remove it

    def __post_init__(self) -> None:
        """Refuse unknown actions."""
        if self.action not in ("flag", "drop"):
            raise ConfigError(f"filters.false_negatives.action must be 'flag' or 'drop', got {self.action!r}")


@dataclass
class Filters:
    """All filters of a synthesis run, configured from `filters.*`; `contamination` needs the evaluation texts."""

    length: LengthBounds = field(default_factory=LengthBounds)
    language: LanguageBounds = field(default_factory=LanguageBounds)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    copy: bool = True
    max_copy_similarity: float | None = None
    contamination: ContaminationIndex | None = None
    false_negatives: FalseNegativeConfig = field(default_factory=FalseNegativeConfig)

    @classmethod
    def from_config(cls, cfg: dict, eval_texts: list[str] | None) -> Filters:
        """Build from the `filters` config node (a plain dict); contamination is on when `eval_texts` is given."""
        unknown = set(cfg) - {"length", "language", "dedup", "copy", "contamination", "false_negatives"}
        if unknown:
            raise ConfigError(
                f"filters: unknown key(s) {sorted(unknown)}; known: length, language, dedup, copy, contamination, "
                "false_negatives"
            )
        contamination = dict(cfg.get("contamination") or {})
        enabled = contamination.pop("enabled", True)
        copy_cfg = dict(cfg.get("copy") or {})
        return cls(
            length=LengthBounds(**(cfg.get("length") or {})),
            language=LanguageBounds(**(cfg.get("language") or {})),
            dedup=DedupConfig(**(cfg.get("dedup") or {})),
            copy=copy_cfg.get("enabled", True),
            max_copy_similarity=copy_cfg.get("max_similarity"),
            contamination=ContaminationIndex(eval_texts, **contamination) if enabled and eval_texts else None,
            false_negatives=FalseNegativeConfig(**(cfg.get("false_negatives") or {})),
        )

    def text_reason(self, text: str) -> str | None:
        """Why a single text (either side) must be dropped, or None."""
        if not self.length.ok(text):
            return "length"
        if not self.language.ok(text):
            return "language"
        if self.contamination is not None and (hit := self.contamination.check(text)):
            return f"contamination_{hit}"
        return None

    def filter_texts(self, texts: list[str]) -> tuple[list[str], Counter]:
        """Source texts that pass length, language, contamination and duplicate checks; drops counted by reason."""
        stage = TextStage(self, texts)
        stage.ensure(len(texts))
        return stage.kept, stage.counts

    def _duplicate(self, index: OverlapIndex, text: str) -> str | None:
        """'exact_duplicate' / 'near_duplicate' if `text` repeats an indexed one (then not indexed), else index it."""
        if not (self.dedup.exact or self.dedup.near):
            return None
        found = index.find(text)
        if (
            found is None
            or (found.kind == "near" and not self.dedup.near)
            or (found.kind == "exact" and not self.dedup.exact)
        ):
            index.add(text)
            return None
        return f"{found.kind}_duplicate"

    def pair_reason(self, anchor: str, positive: str, allows_copy: bool, positives: OverlapIndex) -> str | None:
        """Why a generated pair must be dropped, or None (a kept pair's positive is added to `positives`)."""
        if self.copy and not allows_copy and is_copy(anchor, positive, self.max_copy_similarity):
            return "copy_of_anchor"
        if reason := self.text_reason(positive):
            return f"positive_{reason}"
        if not self.length.ratio_ok(anchor, positive):
            return "length_ratio"
        if not allows_copy and (reason := self._duplicate(positives, positive)):
            return f"positive_{reason}"
        return None

    def flag_false_negatives(self, anchors: list[str]) -> list[bool]:
        """True for each anchor near-duplicating an earlier anchor of its batch (consecutive `batch_size` chunks)."""
        cfg = self.false_negatives
        size = cfg.batch_size or max(1, len(anchors))
        flags = []
        for start in range(0, len(anchors), size):
            index = OverlapIndex(cfg.threshold, shingle=cfg.n, kind=cfg.shingle)
            for anchor in anchors[start : start + size]:
                found = index.find(anchor)
                flags.append(found is not None)
                if found is None:
                    index.add(anchor)
        return flags


class TextStage:
    """The text filters applied lazily, in source order: only as many source texts are examined as shards need."""

    def __init__(self, filters: Filters, texts: list[str]) -> None:
        """Start at the first source text."""
        self.filters, self.source, self.position = filters, texts, 0
        self.kept: list[str] = []
        self.counts: Counter = Counter()
        self.index = filters.dedup.index()

    def ensure(self, n: int) -> list[str]:
        """Examine source texts until `n` have passed (or the source ends); returns the passed texts."""
        while len(self.kept) < n and self.position < len(self.source):
            text = self.source[self.position]
            self.position += 1
            reason = self.filters.text_reason(text) or self.filters._duplicate(self.index, text)
            if reason:
                self.counts[reason] += 1
            else:
                self.kept.append(text)
        return self.kept


def is_copy(anchor: str, positive: str, max_similarity: float | None = None) -> bool:
    """The positive equals the anchor but for case, punctuation and stopwords (or is `max_similarity` similar)."""
    if copy_key(anchor) == copy_key(positive):
        return True
    if max_similarity is None:
        return False
    from difflib import SequenceMatcher

    return SequenceMatcher(None, normalise(anchor), normalise(positive)).ratio() >= max_similarity


def task_texts(tasks: list) -> list[str]:
    """Every text of the given mteb tasks (all splits; `sentences` or `text` columns, nested lists flattened)."""
    texts: list[str] = []
    for task in tasks:
        task.load_data()
        dataset = task.dataset
        splits = dataset.values() if hasattr(dataset, "values") else [dataset]
        for split in splits:
            for column in ("sentences", "text"):
                if hasattr(split, "column_names") and column in split.column_names:
                    for value in split[column]:
                        texts.extend(value if isinstance(value, list) else [value])
    return [t for t in texts if isinstance(t, str) and t.strip()]
