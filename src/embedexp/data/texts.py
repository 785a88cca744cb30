"""Unlabelled texts for objective=mntp: a plain text file (one text per line) or one column of a table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedexp.core.errors import DataError
from embedexp.data.pairs import Pair, read_table


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file."""
    if not path.is_file():
        raise DataError(f"{path}: text file not found")
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err


@dataclass
class TextFile:
    """Texts from a `.txt` file (one per line) or a CSV / JSONL / Parquet column, each paired with itself.

    MNTP reads every distinct text of a batch once, so the pairs (t, t) are just texts; a contrastive run on them
    would learn nothing.
    """

    path: str
    column: str = "text"
    max_texts: int | None = None

    def load(self) -> list[Pair]:
        """Read the texts."""
        path = Path(self.path)
        if path.suffix.lower() == ".txt":
            texts = read_lines(path)
        else:
            frame = read_table(path)
            if self.column not in frame.columns:
                raise DataError(f"{path}: no column '{self.column}'; columns are {list(frame.columns)}")
            texts = [str(v).strip() for v in frame[self.column] if isinstance(v, str) and v.strip()]
        if not texts:
            raise DataError(f"{path}: holds no texts")
        texts = texts[: self.max_texts] if self.max_texts else texts
        return [(text, text) for text in texts]
