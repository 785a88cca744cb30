"""Exact and near-duplicate lookup of texts: normalised keys, and datasketch MinHash LSH over character or word
shingles. The one implementation: task contamination (`data.contamination`, `data.corpora`) and the synthesis
filters (`synthesis.filters`: duplicates, false negatives) all use `OverlapIndex`."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from numpy.lib.stride_tricks import sliding_window_view

WORD = re.compile(r"\w+", re.UNICODE)
PREVIEW_CHARS = 300  # of each indexed text, kept for showing examples
POLY = np.uint64(1_000_003)  # multiplier of the shingles' polynomial hash


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation dropped, whitespace collapsed: the key for exact matching."""
    return " ".join(WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def key_digest(key: str) -> int:
    """A stable 64-bit digest of a normalised text (exact lookup without storing every text twice)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def shingle_hashes(key: str, n: int = 5) -> list[int]:
    """Distinct 32-bit hashes of the character n-grams of a normalised text (of the whole text when it is shorter),
    computed with numpy: a polynomial hash of the code points of each window."""
    codes = np.frombuffer(key.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    windows = sliding_window_view(codes, n) if len(codes) > n else codes[None, :]
    powers = POLY ** np.arange(windows.shape[1] - 1, -1, -1, dtype=np.uint64)
    return np.unique((windows * powers).sum(axis=1) & 0xFFFFFFFF).tolist()


def word_shingle_hashes(key: str, n: int = 1) -> list[int]:
    """Distinct 32-bit hashes of the word n-grams of a normalised text (of all its words when it has fewer than n)."""
    tokens = key.split()
    grams = {" ".join(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1))}
    return sorted({zlib.crc32(gram.encode("utf-8")) for gram in grams})


def _identity(value: int) -> int:
    """The shingles are hashed already (`shingle_hashes`): MinHash takes them as they are."""
    return value


@dataclass(frozen=True)
class Match:
    """An indexed text that a query repeats: `kind` is 'exact' (same normalised text) or 'near' (MinHash Jaccard)."""

    kind: str
    entry: int
    similarity: float


class OverlapIndex:
    """Texts indexed for exact (normalised) and near-duplicate lookup; each entry carries a label (e.g. its task).

    Near duplicates: datasketch `MinHashLSH` proposes candidates whose character-shingle Jaccard is likely at least
    `threshold`; the MinHash estimate (`num_perm` permutations) confirms them. Pickles without the LSH tables, which
    are rebuilt from the stored signatures on loading (a tenth of the size, and as fast as unpickling them).
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, kind: str = "char") -> None:
        """An empty index; `threshold` in (0, 1]: the shingle Jaccard from which two texts are near duplicates;
        `kind`: `char` shingles of `shingle` characters (for short texts), or `word` shingles of `shingle` words."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        if kind not in ("char", "word"):
            raise ValueError(f"shingle kind must be 'char' or 'word', got {kind!r}")
        self.threshold, self.num_perm, self.shingle, self.kind = threshold, num_perm, shingle, kind
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._template = MinHash(num_perm=num_perm, hashfunc=_identity)
        self.exact: dict[int, int] = {}  # key_digest of the normalised text -> entry
        self.labels: list[str] = []
        self.texts: list[str] = []
        self._signatures: list[np.ndarray] = []

    def __getstate__(self) -> dict:
        """Everything but the LSH tables and the template (rebuilt from the signatures on loading)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("lsh", "_template")}
        state["_signatures"] = np.stack(self._signatures) if self._signatures else np.zeros((0, self.num_perm))
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore the texts and signatures and index the signatures again."""
        signatures = state.pop("_signatures")
        self.__dict__.update(state)
        self._signatures = list(signatures.astype(np.uint32, copy=False))
        self._template = MinHash(num_perm=self.num_perm, hashfunc=_identity)
        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        with self.lsh.insertion_session() as session:
            for entry, hashvalues in enumerate(self._signatures):
                sketch = LeanMinHash(seed=self._template.seed, hashvalues=hashvalues, scheme=self._template.scheme)
                session.insert(entry, sketch, check_duplication=False)

    def __len__(self) -> int:
        """Number of indexed texts."""
        return len(self.texts)

    def minhash(self, key: str) -> MinHash:
        """The MinHash of a normalised text's shingles."""
        sketch = self._template.copy()
        hashes = word_shingle_hashes if getattr(self, "kind", "char") == "word" else shingle_hashes
        sketch.update_batch(hashes(key, self.shingle))
        return sketch

    def add(self, text: str, label: str = "") -> None:
        """Index a text under `label` (an exact repeat of an indexed text is only counted once)."""
        key = normalise(text)
        digest = key_digest(key)
        if not key or digest in self.exact:
            return
        entry = len(self.texts)
        self.exact[digest] = entry
        self.labels.append(label)
        self.texts.append(text[:PREVIEW_CHARS])
        sketch = self.minhash(key)
        self._signatures.append(sketch.hashvalues)
        self.lsh.insert(entry, sketch, check_duplication=False)

    def add_if_new(self, text: str, label: str = "") -> Match | None:
        """Index `text` unless it repeats an indexed text; returns that repeat, else None."""
        found = self.find(text)
        if found is None:
            self.add(text, label)
        return found

    def find(self, text: str) -> Match | None:
        """The indexed text that `text` repeats (exact first, else the most similar near duplicate), or None."""
        key = normalise(text)
        if not key:
            return None
        entry = self.exact.get(key_digest(key))
        if entry is not None:
            return Match("exact", entry, 1.0)
        sketch = self.minhash(key)
        best, best_similarity = None, 0.0
        for entry in self.lsh.query(sketch):
            similarity = float(np.mean(self._signatures[entry] == sketch.hashvalues))
            if similarity >= self.threshold and similarity > best_similarity:
                best, best_similarity = entry, similarity
        return None if best is None else Match("near", best, best_similarity)
