"""Unlabelled texts for objective=mntp: a plain text file (one text per line) or one column of a table."""

from __future__ import annotations

from dataclasses import dataclass

from embedexp.data.pairs import Pair
from embedexp.data.reader import read_texts


@dataclass
class TextFile:
    """Texts from a `.txt` file (one per line) or a table column (`embedexp.data.reader`), each paired with itself.

    Empty or non-text values of a table column are skipped (and counted in the log). MNTP reads every distinct text
    of a batch once, so the pairs (t, t) are just texts; a contrastive run on them would learn nothing.
    """

    path: str
    column: str = "text"
    max_texts: int | None = None

    def load(self) -> list[Pair]:
        """Read the texts."""
        texts = read_texts(self.path, self.column, "data.source.path", "data.source.column", skip_empty=True)
        texts = [text.strip() for text in texts]
        texts = texts[: self.max_texts] if self.max_texts else texts
        return [(text, text) for text in texts]
