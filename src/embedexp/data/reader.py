"""Read texts from a file: .txt (one per line) or a table (.csv, .tsv, .jsonl, .parquet) and its text column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from embedexp.core.errors import DataError

TABLE_READERS = {
    ".csv": lambda path: pd.read_csv(path, keep_default_na=False),
    ".tsv": lambda path: pd.read_csv(path, sep="\t", keep_default_na=False),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": pd.read_parquet,
}

def read_texts(path: str | Path, text_column: str = "text") -> tuple[list[str], pd.DataFrame]:
    """Texts to embed and the table they came from (a `.txt` file becomes a one-column table)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input={str(path)!r}: no such file")
    if path.suffix == ".txt":
        lines = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
        frame = pd.DataFrame({text_column: [line for line in lines if line.strip()]})
    elif path.suffix in TABLE_READERS:
        frame = TABLE_READERS[path.suffix](path)
    else:
        raise DataError(f"input={str(path)!r}: unsupported file type; use .txt, {', '.join(TABLE_READERS)}")
    if text_column not in frame.columns:
        raise DataError(f"{path}: no column {text_column!r} (text_column); columns are {list(frame.columns)}")
    texts = frame[text_column]
    bad = [int(i) for i, value in enumerate(texts) if not isinstance(value, str) or not value.strip()]
    if bad:
        raise DataError(f"{path}: column {text_column!r} is empty or not text in rows {bad[:10]} (0-based)")
    return texts.tolist(), frame
