"""Sources of positive pairs: table files (embedexp.data.reader), Hugging Face datasets, the offline Debian corpus."""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from embedexp.core.errors import DataError
from embedexp.data.debian import corpus_texts, load_corpus, train_texts
from embedexp.data.noise import TextNoise
from embedexp.data.reader import file_label, read_table

log = logging.getLogger(__name__)

# (text, positive) or (text, positive, hard negatives): the negatives are extra wrong candidates in InfoNCE
Pair = tuple[str, str] | tuple[str, str, tuple[str, ...]]


def first_pairs(candidates, exclude, origin: str, max_pairs: int | None) -> list[Pair]:
    """Up to `max_pairs` of a source's candidate pairs (all with None), none repeating an evaluation text when
    `exclude` (the run's contamination index) is set."""
    if exclude is not None:
        return exclude.drop(candidates, origin, limit=max_pairs)
    return [pair for _, pair in zip(range(max_pairs or 1 << 62), candidates)]


NEG_COLUMN = "text_neg"


def negative_columns(frame: pd.DataFrame, neg_column: str | None, origin: str) -> list[str]:
    """Columns holding hard negatives: `<neg>` and `<neg>_<i>` (i = 1, 2, ...), in that order.

    `neg_column` None looks for `text_neg` columns and accepts a file without any; a name given explicitly must exist.
    A column `<neg>_<x>` whose suffix is not a number is an error (a misspelt negative column would be ignored).
    """
    prefix = neg_column or NEG_COLUMN
    found: list[tuple[int, str]] = []
    for column in map(str, frame.columns):
        if column == prefix:
            found.append((0, column))
        elif column.startswith(prefix + "_"):
            suffix = column[len(prefix) + 1 :]
            if not suffix.isdigit():
                raise DataError(
                    f"{origin}: column '{column}' looks like a hard-negative column but '{suffix}' is not a number; "
                    f"name negative columns '{prefix}' or '{prefix}_1', '{prefix}_2', ..."
                )
            found.append((int(suffix), column))
    if neg_column and not found:
        raise DataError(
            f"{origin}: no hard-negative column '{neg_column}' (neg_column); columns are {list(frame.columns)}"
        )
    return [column for _, column in sorted(found)]


def _negatives(value, row: int, column: str, origin: str) -> list[str]:
    """The negatives in one cell: a text, a list of texts (list column), or missing (None / NaN / empty list)."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    items = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else [value]
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise DataError(f"{origin}: row {row} column '{column}' holds an empty or non-text negative: {item!r}")
    return items


COLUMN_KEYS = ("data.source.text_column", "data.source.pos_column")  # the keys that choose a pair file's columns


def validate_pairs(
    frame: pd.DataFrame,
    text_column: str,
    pos_column: str,
    origin: str,
    neg_column: str | None = None,
    column_keys: tuple[str, str] | None = None,
) -> list[Pair]:
    """Check columns and texts of a pair table and return its rows as (text, positive[, negatives]) tuples;
    `column_keys`: the config keys that choose the text and positive columns (named when a column is missing)."""
    missing = [c for c in (text_column, pos_column) if c not in frame.columns]
    if missing:
        hint = f" (choose them with {column_keys[0]}=<column> {column_keys[1]}=<column>)" if column_keys else ""
        raise DataError(f"{origin}: missing column(s) {missing}; columns are {list(frame.columns)}{hint}")
    if len(frame) == 0:
        raise DataError(f"{origin}: has zero rows")
    neg_columns = negative_columns(frame, neg_column, origin)
    negatives = [frame[c].tolist() for c in neg_columns]
    pairs = []
    for row, (text, positive) in enumerate(zip(frame[text_column], frame[pos_column])):
        for column, value in ((text_column, text), (pos_column, positive)):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{origin}: row {row} column '{column}' is empty or not text: {value!r}")
        if neg_columns:
            cells = zip(neg_columns, negatives)
            row_negatives = tuple(n for c, values in cells for n in _negatives(values[row], row, c, origin))
            pairs.append((text, positive, row_negatives))
        else:
            pairs.append((text, positive))
    if neg_columns:
        log.info("%s: %d hard negatives from columns %s", origin, sum(len(p[2]) for p in pairs), neg_columns)
    return pairs


@dataclass
class PairFile:
    """Pairs from a table file (CSV / TSV / JSONL / JSON / Parquet, `.gz` ok) with a text and a positive column."""

    path: str
    text_column: str = "text"
    pos_column: str = "text_pos"
    max_pairs: int | None = None
    neg_column: str | None = None  # hard negatives: null = `text_neg`, `text_neg_1`, ... if the file has them

    def load(self) -> list[Pair]:
        """Read and validate the file."""
        frame = read_table(self.path, "data.source.path")
        where = file_label(self.path, "data.source.path")
        pairs = validate_pairs(frame, self.text_column, self.pos_column, where, self.neg_column, COLUMN_KEYS)
        return pairs[: self.max_pairs] if self.max_pairs else pairs


@dataclass
class SyntheticPairs:
    """Pairs written by `python -m embedexp synth`: the Parquet shards (`pairs-*.parquet`) of its output folder."""

    folder: str
    max_pairs: int | None = None
    drop_flagged: bool = False  # skip pairs the false-negative filter flagged (column fn_flag)

    def load(self) -> list[Pair]:
        """Read the shards in order and validate them."""
        folder = Path(self.folder)
        shards = sorted(folder.glob("pairs-*.parquet"))
        if not shards:
            raise DataError(
                f"{folder}: no synthetic pair shards (pairs-*.parquet); run `python -m embedexp synth` first"
            )
        manifest = folder / "manifest.json"
        if manifest.is_file() and '"status": "running"' in manifest.read_text(encoding="utf-8"):
            log.warning("%s: the synthesis run has not finished; using its %d complete shard(s)", folder, len(shards))
        frame = pd.concat([read_table(path) for path in shards], ignore_index=True)
        if self.drop_flagged and "fn_flag" in frame.columns:
            frame = frame[~frame["fn_flag"].astype(bool)]
        frame = frame.head(self.max_pairs) if self.max_pairs else frame
        return validate_pairs(frame.reset_index(drop=True), "text", "text_pos", str(folder))


@dataclass
class HFPairs:
    """Pairs from a Hugging Face dataset id (needs the hub, or its local cache)."""

    dataset: str
    split: str = "train"
    subset: str | None = None
    text_column: str = "text"
    pos_column: str = "text_pos"
    max_pairs: int | None = None
    neg_column: str | None = None  # hard negatives: null = `text_neg`, `text_neg_1`, ... if the dataset has them

    def load(self) -> list[Pair]:
        """Download (or read from cache) and validate."""
        import datasets

        split = f"{self.split}[:{self.max_pairs}]" if self.max_pairs else self.split
        frame = datasets.load_dataset(self.dataset, self.subset, split=split).to_pandas()
        origin = f"dataset {self.dataset}"
        return validate_pairs(frame, self.text_column, self.pos_column, origin, self.neg_column, COLUMN_KEYS)


@dataclass
class DebianPairs:
    """Offline pairs from Debian package descriptions of the *training* split (disjoint from the eval tasks).

    pairing `noise`: a description and a noised copy of itself; `short_long`: the one-line summary and
    the long description of the same package.
    """

    text_field: str = "long"
    pairing: str = "noise"
    max_pairs: int | None = 2000
    noise: TextNoise = field(default_factory=TextNoise)
    seed: int = 0
    cache_dir: str = ".cache/embedexp"
    exclude: object | None = None  # EvaluationTexts: drop pairs repeating any evaluation text (exact or near)
    origin: str = "data.source"  # the config key, in messages

    def load(self) -> list[Pair]:
        """Build the pairs from the cached corpus, shuffled by `seed`."""
        if self.pairing not in ("noise", "short_long"):
            raise DataError(f"data.source.pairing must be 'noise' or 'short_long', got {self.pairing!r}")
        corpus = load_corpus(self.cache_dir)
        field_name = "long" if self.pairing == "short_long" else self.text_field
        if not corpus_texts(corpus, "train", field_name) and field_name == "long":
            log.warning("no long Debian descriptions here (apt Translation-en lists missing); using short ones")
            field_name = "short"
        records = train_texts(corpus, field_name)
        rng = random.Random(self.seed)
        rng.shuffle(records)
        if self.pairing == "short_long" and field_name == "long":
            pairs = ((r["short"], r["long"]) for r in records)
        else:
            pairs = ((r[field_name], self.noise(r[field_name], rng)) for r in records)
        if self.exclude is not None:  # both sides, against every evaluation task (summaries repeat across packages)
            return self.exclude.drop(pairs, self.origin, limit=self.max_pairs)
        return list(itertools.islice(pairs, self.max_pairs))
