"""Text helpers for the pair filters: normalisation, word n-grams, character shingles, MinHash near-duplicates."""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import defaultdict

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)
_PRIME = (1 << 31) - 1


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation dropped, whitespace collapsed: the key for exact matching."""
    return " ".join(WORD.findall(unicodedata.normalize("NFKC", text).lower()))


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


def shingles(text: str, kind: str = "char", n: int = 5) -> set[str]:
    """Character n-grams (`char`, robust for short texts) or word n-grams (`word`) of the normalised text."""
    if kind == "word":
        grams = word_ngrams(text, n)
        return grams or {normalise(text)}
    if kind != "char":
        raise ValueError(f"shingle kind must be 'char' or 'word', got {kind!r}")
    key = normalise(text)
    if len(key) <= n:
        return {key}
    return {key[i : i + n] for i in range(len(key) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def stable_hash(value: str) -> int:
    """A 32-bit hash that does not depend on PYTHONHASHSEED (so runs and resumes agree)."""
    return zlib.crc32(value.encode("utf-8"))


class NearDuplicateIndex:
    """Exact and near-duplicate lookup: MinHash with LSH banding proposes candidates, exact Jaccard confirms.

    `threshold` is the shingle Jaccard at or above which two texts count as near-duplicates.
    """

    def __init__(
        self, threshold: float = 0.8, kind: str = "char", n: int = 5, num_perm: int = 64, bands: int | None = None
    ) -> None:
        """Set up `num_perm` seeded hash permutations split into `bands` LSH bands (more bands for lower thresholds)."""
        bands = bands or (32 if threshold < 0.7 else 16)
        if num_perm % bands:
            raise ValueError(f"num_perm={num_perm} must be a multiple of bands={bands}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold, self.kind, self.n, self.bands = threshold, kind, n, bands
        rng = np.random.default_rng(12345)
        self._a = rng.integers(1, _PRIME, size=num_perm, dtype=np.int64)
        self._b = rng.integers(0, _PRIME, size=num_perm, dtype=np.int64)
        self._buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(bands)]
        self._shingles: list[set[str]] = []
        self._exact: dict[str, int] = {}

    def __len__(self) -> int:
        """Number of indexed texts."""
        return len(self._shingles)

    def _signature(self, grams: set[str]) -> np.ndarray:
        """MinHash signature of a shingle set."""
        hashes = np.fromiter((stable_hash(g) for g in grams), dtype=np.int64, count=len(grams))
        return ((np.outer(hashes, self._a) + self._b) % _PRIME).min(axis=0)

    def _band_keys(self, signature: np.ndarray) -> list[bytes]:
        """One bucket key per band."""
        return [band.tobytes() for band in np.split(signature, self.bands)]

    def find(self, text: str) -> tuple[str, int] | None:
        """('exact' | 'near', index) of an indexed text that duplicates `text`, else None."""
        key = normalise(text)
        if key in self._exact:
            return "exact", self._exact[key]
        grams = shingles(text, self.kind, self.n)
        candidates = {
            i for b, k in enumerate(self._band_keys(self._signature(grams))) for i in self._buckets[b].get(k, ())
        }
        best = max(candidates, key=lambda i: jaccard(grams, self._shingles[i]), default=None)
        if best is not None and jaccard(grams, self._shingles[best]) >= self.threshold:
            return "near", best
        return None

    def add(self, text: str) -> int:
        """Index a text; returns its index."""
        index = len(self._shingles)
        grams = shingles(text, self.kind, self.n)
        self._shingles.append(grams)
        self._exact.setdefault(normalise(text), index)
        for band, key in enumerate(self._band_keys(self._signature(grams))):
            self._buckets[band][key].append(index)
        return index

    def add_if_new(self, text: str) -> str | None:
        """Index `text` unless it duplicates an indexed one; returns 'exact' / 'near' for a duplicate, else None."""
        found = self.find(text)
        if found is None:
            self.add(text)
            return None
        return found[0]
