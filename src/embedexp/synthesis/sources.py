"""Anchor texts: a column of a table or text file (embedexp.data.reader), an HF dataset, or Debian descriptions."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from embedexp.core.errors import ConfigError, DataError
from embedexp.data.debian import corpus_texts, load_corpus
from embedexp.data.reader import read_texts

log = logging.getLogger(__name__)


def _clean(values, origin: str) -> list[str]:
    """Stripped non-empty strings; other values (empty, NaN, numbers) are skipped and counted in the log."""
    texts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    skipped = len(values) - len(texts)
    if skipped:
        log.info("%s: skipped %d empty or non-text values", origin, skipped)
    if not texts:
        raise DataError(f"{origin}: no non-empty texts")
    return texts


def _shuffle_and_cap(texts: list[str], shuffle: bool, seed: int, max_texts: int | None) -> list[str]:
    """Seeded shuffle (optional), then the first `max_texts`."""
    if shuffle:
        random.Random(seed).shuffle(texts)
    return texts[:max_texts] if max_texts else texts


@dataclass
class TextFileSource:
    """Texts from a column of a local file (`.txt`: one text per line; any format of embedexp.data.reader)."""

    path: str
    text_column: str = "text"
    max_texts: int | None = None
    shuffle: bool = False
    seed: int = 0

    @property
    def name(self) -> str:
        """The `source` value written with every pair."""
        return f"file:{Path(self.path).name}:{self.text_column}"

    def load(self) -> list[str]:
        """Read the column; empty or non-text values are skipped (and counted in the log)."""
        texts = read_texts(self.path, self.text_column, "source.path", "source.text_column", skip_empty=True)
        return _shuffle_and_cap([t.strip() for t in texts], self.shuffle, self.seed, self.max_texts)


@dataclass
class HFTextSource:
    """Texts from a column of a Hugging Face dataset: a hub id (needs the hub or its cache), or a builder such as
    `parquet` / `json` / `csv` with local `data_files`."""

    dataset: str
    text_column: str = "text"
    split: str = "train"
    subset: str | None = None
    data_files: str | list[str] | None = None
    max_texts: int | None = None
    shuffle: bool = False
    seed: int = 0

    @property
    def name(self) -> str:
        """The `source` value written with every pair."""
        return f"hf:{self.dataset}:{self.split}:{self.text_column}"

    def load(self) -> list[str]:
        """Download (or read from cache) the split and take the column."""
        import datasets

        try:
            data = datasets.load_dataset(self.dataset, self.subset, split=self.split, data_files=self.data_files)
        except (OSError, ValueError, FileNotFoundError) as err:
            raise DataError(f"dataset {self.dataset}: cannot load split {self.split!r}: {err}") from err
        if self.text_column not in data.column_names:
            raise DataError(
                f"dataset {self.dataset} ({self.split}): no text column '{self.text_column}'; "
                f"columns are {data.column_names}"
            )
        return _shuffle_and_cap(_clean(data[self.text_column], self.name), self.shuffle, self.seed, self.max_texts)


@dataclass
class DebianSource:
    """Offline default: Debian package descriptions of the *training* split (no package of the evaluation split)."""

    field: str = "short"
    split: str = "train"
    max_texts: int | None = None
    shuffle: bool = True
    seed: int = 0
    cache_dir: str = ".cache/embedexp"

    def __post_init__(self) -> None:
        """Refuse unknown fields and splits."""
        if self.field not in ("short", "long"):
            raise ConfigError(f"source.field must be 'short' or 'long', got {self.field!r}")
        if self.split not in ("train", "eval"):
            raise ConfigError(f"source.split must be 'train' or 'eval', got {self.split!r}")
        if self.split == "eval":
            log.warning("source.split=eval: these packages feed the Debian evaluation tasks")

    @property
    def name(self) -> str:
        """The `source` value written with every pair."""
        return f"debian:{self.split}:{self.field}"

    def load(self) -> list[str]:
        """The descriptions of the split, shuffled by `seed`."""
        records = corpus_texts(load_corpus(self.cache_dir), self.split, self.field)
        texts = [r[self.field] for r in records]
        return _shuffle_and_cap(_clean(texts, self.name), self.shuffle, self.seed, self.max_texts)
