"""One reader for text and table files: .txt, .csv, .tsv, .jsonl, .json, .parquet, each optionally gzip'ed (`.gz`).

`read_table` turns any of them into a DataFrame (a `.txt` file: one `text` column, one row per non-blank line);
`read_texts` takes one text column and checks it. Errors are `DataError`s that start with `<config key>=<file>`;
row numbers in them are 0-based data rows (the header of a CSV / TSV file is not a row).
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pandas as pd

from embedexp.core.errors import DataError

log = logging.getLogger(__name__)
TEXT_COLUMN = "text"  # the one column of a .txt file


def _lines(handle: IO[bytes]) -> pd.DataFrame:
    """A .txt file: one text per line as written (line end removed), blank lines skipped."""
    lines = (line.rstrip("\n") for line in io.TextIOWrapper(handle, encoding="utf-8-sig"))
    return pd.DataFrame({TEXT_COLUMN: [line for line in lines if line.strip()]}, dtype=object)


def _parquet(handle: IO[bytes]) -> pd.DataFrame:
    """Parquet reads its footer first: a gzip'ed file is decompressed into memory rather than seeked through."""
    return pd.read_parquet(io.BytesIO(handle.read()) if isinstance(handle, gzip.GzipFile) else handle)


# CSV / TSV: only an empty cell is missing ("NA", "null", "None" are texts); JSON: strings stay strings (no dates)
READERS: dict[str, Callable[[IO[bytes]], pd.DataFrame]] = {
    ".txt": _lines,
    ".csv": lambda handle: pd.read_csv(handle, keep_default_na=False, na_values=[""]),
    ".tsv": lambda handle: pd.read_csv(handle, sep="\t", keep_default_na=False, na_values=[""]),
    ".jsonl": lambda handle: pd.read_json(handle, lines=True, dtype=False),
    ".json": lambda handle: pd.read_json(handle, dtype=False),
    ".parquet": _parquet,
}
SUPPORTED = f"{', '.join(READERS)} (each optionally .gz)"


def is_gzip(path: str | Path) -> bool:
    """Whether the file name ends in `.gz`."""
    return Path(path).name.lower().endswith(".gz")


def file_format(path: str | Path) -> str:
    """The format suffix once `.gz` is stripped: `pairs.jsonl.gz` -> `.jsonl` ('' when there is none)."""
    name = Path(path).name.lower()
    return Path(name[:-3] if is_gzip(name) else name).suffix


def file_label(path: str | Path, key: str | None = None) -> str:
    """How errors name a file: `<key>=<path>`, or the path alone without a config key."""
    return f"{key}={path}" if key else str(path)


def read_table(path: str | Path, key: str | None = None, txt_column: str = TEXT_COLUMN) -> pd.DataFrame:
    """Read any supported file into a DataFrame (`.txt`: one column named `txt_column`); `key` names the config key."""
    path, where = Path(path), file_label(path, key)
    kind = file_format(path)
    if kind not in READERS:
        found = repr(kind) if kind else f"of {path.name!r}"
        raise DataError(f"{where}: unsupported file type {found}; use one of {SUPPORTED}")
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as handle:
            frame = READERS[kind](handle)
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    except Exception as err:  # gzip, pandas and pyarrow raise many types for corrupt or malformed files
        what = f"gzip'ed {kind}" if is_gzip(path) else kind
        raise DataError(f"{where}: cannot read as {what}: {type(err).__name__}: {err}") from err
    return frame.rename(columns={TEXT_COLUMN: txt_column}) if kind == ".txt" else frame


def column_texts(
    frame: pd.DataFrame, column: str, where: str, column_key: str = "text_column", skip_empty: bool = False
) -> list[str]:
    """The values of a text column, as written; empty or non-text values are an error (or skipped with `skip_empty`)."""
    if column not in frame.columns:
        raise DataError(
            f"{where}: no text column {column!r}; columns are {list(frame.columns)} (set {column_key}=<name>)"
        )
    values = frame[column].tolist()
    bad = [row for row, value in enumerate(values) if not isinstance(value, str) or not value.strip()]
    if bad and not skip_empty:
        count = f", {len(bad)} rows in all" if len(bad) > 10 else ""
        raise DataError(
            f"{where}: column {column!r} is empty or not text in rows {bad[:10]} (0-based{count}); "
            f"row {bad[0]} holds {values[bad[0]]!r}"
        )
    if bad:
        log.info("%s: skipped %d empty or non-text values of column %r (rows %s)", where, len(bad), column, bad[:10])
        skipped = set(bad)
        values = [value for row, value in enumerate(values) if row not in skipped]
    if not values:
        raise DataError(f"{where}: holds no texts (column {column!r})")
    return values


def read_texts(
    path: str | Path,
    column: str = TEXT_COLUMN,
    key: str | None = None,
    column_key: str = "text_column",
    skip_empty: bool = False,
) -> list[str]:
    """The texts of `column` of any supported file (a `.txt` file's lines whatever `column` is), checked."""
    frame = read_table(path, key, txt_column=column)
    return column_texts(frame, column, file_label(path, key), column_key, skip_empty)
