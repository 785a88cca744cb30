"""Text helpers for the pair filters: word n-grams and copy keys. Normalisation and near-duplicate lookup are
`embedexp.data.overlap`'s (`normalise`, `OverlapIndex`), shared with the contamination checks."""

from __future__ import annotations

import zlib

from embedexp.data.overlap import normalise

__all__ = ["STOPWORDS", "copy_key", "normalise", "stable_hash", "word_ngrams", "words"]

STOPWORDS = frozenset(
    "a an the and or of for to in on with by from as at is are be this that it its into using based via your you "
    "can which".split()
)


def copy_key(text: str) -> str:
    """The normalised words without stopwords: 'The OmniORB core libraries.' and 'omniORB core libraries' agree."""
    tokens = normalise(text).split()
    return " ".join(w for w in tokens if w not in STOPWORDS) or " ".join(tokens)


def words(text: str) -> list[str]:
    """The normalised words of a text."""
    return normalise(text).split()


def word_ngrams(text: str, n: int) -> set[str]:
    """The set of word n-grams of a text (empty when it has fewer than n words)."""
    tokens = words(text)
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def stable_hash(value: str) -> int:
    """A 32-bit hash that does not depend on PYTHONHASHSEED (so runs and resumes agree)."""
    return zlib.crc32(value.encode("utf-8"))
