"""The built pair sources on small files made here: manual pages, docstrings, documentation, the dictionary, and the
shared sampling (cache, seed, deduplication, family cap, decontamination)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from dataclasses import dataclass
from typing import ClassVar

import pytest

from embedexp.data.corpora import CorpusPairs
from embedexp.data.dictionary import entry_records
from embedexp.data.docs import DocPairs, heading_pair
from embedexp.data.docstrings import DocstringPairs, docstring_pair
from embedexp.data.manpages import ManPagePairs

MAN_PAGE = r""".TH FROB 1 "2026" "frob 1.0" "User Commands"
.SH NAME
frob \- rearrange the lines of a text file by their checksum
.SH SYNOPSIS
.B frob
[\fIOPTION\fR]... \fIFILE\fR
.SH DESCRIPTION
.B frob
reads each \fIFILE\fR and writes its lines sorted by a checksum of their contents, so that equal lines end up
next to each other.
.PP
Second paragraph.
.SH OPTIONS
.TP
\fB\-v\fR
verbose output
"""


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_man_page_summary_pairs_with_the_first_description_paragraph(tmp_path):
    (tmp_path / "man1").mkdir()
    with gzip.open(tmp_path / "man1" / "frob.1.gz", "wt") as handle:
        handle.write(MAN_PAGE)
    (tmp_path / "man1" / "frobnicate.1").write_text(".so man1/frob.1\n")  # an alias: no pair of its own
    source = ManPagePairs(root=str(tmp_path), sections=[1], cache_dir=str(tmp_path / "cache"))
    assert source.load() == [
        (
            "rearrange the lines of a text file by their checksum",
            "frob reads each FILE and writes its lines sorted by a checksum of their contents, so that equal lines end "
            "up next to each other.",
        )
    ]
    assert list((tmp_path / "cache" / "manpages").rglob("corpus-v1.jsonl.gz"))


def test_docstring_summary_pairs_with_its_first_prose_paragraph(tmp_path):
    package = tmp_path / "site" / "wobble"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'def spin(x):\n    """Spin the wobble around its longest axis.\n\n    The wobble keeps spinning until '
        'friction brings it to rest, which may take a while.\n\n    Args:\n        x: speed\n    """\n'
        'import os  # never imported: parsed only\nraise SystemExit("imported!")\n'
    )
    (package / "tests").mkdir()
    (package / "tests" / "helpers.py").write_text(
        '"""A test module docstring that is long.\n\nSkipped with its '
        'folder because tests are not documentation prose."""\n'
    )
    source = DocstringPairs(roots=[str(tmp_path / "site")], cache_dir=str(tmp_path / "cache"))
    pairs = source.load()
    assert pairs == [
        (
            "Spin the wobble around its longest axis.",
            "The wobble keeps spinning until friction brings it to rest, which may take a while.",
        )
    ]
    assert docstring_pair("Summary with enough words.\n\nArgs:\n    x: a value that is described here") is None


def test_docs_pair_headings_with_their_first_paragraph_in_markdown_rst_and_info(tmp_path):
    docs = tmp_path / "doc" / "pkg"
    docs.mkdir(parents=True)
    prose = "This section explains how the cache folder is laid out and when its files are written again."
    (docs / "README.md").write_text(f"# Pkg\n\n## Cache folder layout\n\n{prose}\n\n## Getting started\n\n{prose}\n")
    with gzip.open(docs / "guide.rst.gz", "wt") as handle:
        handle.write(f"Guide\n=====\n\nRetry and back-off policy\n-------------------------\n\n{prose}\n")
    info = tmp_path / "info"
    info.mkdir()
    header = "\x1f\nFile: pkg.info,  Node: Sorting,  Next: Top\n\n"
    node = f"{header}2.1 Sorting large inputs\n========================\n\n{prose}\n"
    (info / "pkg.info").write_text("intro" + node)
    source = DocPairs(roots=[str(tmp_path / "doc"), str(info)], python_metadata=False, cache_dir=str(tmp_path / "c"))
    assert sorted(text for text, _ in source.load()) == [
        "Cache folder layout",
        "Retry and back-off policy",
        "Sorting large inputs",
    ]
    assert heading_pair("Getting started", prose) is None and heading_pair("Layout of things", "too short") is None


def test_dictionary_entries_give_headword_definition_pairs():
    entry = {
        "entry": "ombrometer",
        "pos": [
            {
                "definitions": [
                    {"text": "An instrument for measuring the rain that falls; a rain gauge. [1913 Webster]"},
                    {"text": "Obs."},
                ]
            }
        ],
    }
    assert entry_records(entry) == [
        {
            "text": "ombrometer",
            "family": "ombrometer",
            "text_pos": "An instrument for measuring the rain that falls; a rain gauge.",
        }
    ]


@dataclass
class ListCorpus(CorpusPairs):
    """A corpus source over fixed records (counts its builds)."""

    name: ClassVar[str] = "listcorpus"
    rows: ClassVar[list] = []
    builds: ClassVar[int] = 0

    def build(self) -> list[dict]:
        ListCorpus.builds += 1
        return list(self.rows)


class Blocklist:
    """Stands in for EvaluationTexts: drops pairs whose anchor is blocked."""

    def __init__(self, blocked):
        self.blocked = blocked

    def drop(self, pairs, origin, limit=None):
        kept = [p for p in pairs if p[0] not in self.blocked]
        return kept[:limit] if limit else kept


def test_corpus_sampling_is_seeded_deduplicated_family_capped_and_cached(tmp_path):
    anchors = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(30)]  # no two alike
    ListCorpus.rows = [{"text": a, "text_pos": f"positive {i}", "family": str(i % 3)} for i, a in enumerate(anchors)]
    ListCorpus.rows += [{"text": anchors[0].upper() + "!", "text_pos": "a repeat", "family": "0"}]
    ListCorpus.builds = 0
    source = ListCorpus(seed=1, cache_dir=str(tmp_path))
    first = source.load()
    assert ListCorpus(seed=1, cache_dir=str(tmp_path)).load() == first and ListCorpus.builds == 1
    assert ListCorpus(seed=2, cache_dir=str(tmp_path)).load() != first
    assert len(first) == 30  # the repeat of anchor 0 (case, punctuation) is dropped
    capped = ListCorpus(seed=1, cache_dir=str(tmp_path), max_per_family=2).load()
    assert len(capped) == 6  # families 0, 1, 2 twice each
    limited = ListCorpus(seed=1, cache_dir=str(tmp_path), max_pairs=5, exclude=Blocklist({first[0][0]})).load()
    assert limited == first[1:6]
    with gzip.open(tmp_path / "listcorpus" / "corpus-v1.jsonl.gz", "rt") as handle:
        assert len([json.loads(line) for line in handle]) == 31


def test_man_page_build_renders_a_fixed_few_pages_of_each_family():
    from pathlib import Path

    from embedexp.data.corpora import capped_by_family
    from embedexp.data.manpages import page_family

    files = [Path(f"man1/gcloud_alpha_{i}.1.gz") for i in range(10)] + [Path("man1/ls.1.gz"), Path("man1/cp.1.gz")]
    chosen = capped_by_family(files, page_family, str, 3)
    assert len(chosen) == 5 and {p.name for p in chosen} >= {"ls.1.gz", "cp.1.gz"}
    assert capped_by_family(list(reversed(files)), page_family, str, 3) == chosen
