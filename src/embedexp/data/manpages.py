"""Pairs from this machine's manual pages: the NAME line's summary <-> the DESCRIPTION section's first paragraph.

Pages are rendered by groff (`-mandoc`: man and mdoc pages, tbl tables, font and character escapes), fed only the
page up to the end of its DESCRIPTION section, on every CPU core; the records are cached after the first build.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.corpora import CorpusPairs, capped_by_family, prose, squash

log = logging.getLogger(__name__)
GROFF = ["groff", "-mandoc", "-Tutf8", "-t", "-k", "-P-cbou", "-rLL=3000n", "-rHY=0"]
SECTION_MACRO = re.compile(rb"^\.S[Hh]\s+\"?([^\"\n]*)\"?", re.MULTILINE)
NAME_LINE = re.compile(r"^(?P<names>.+?)\s+[-\u2010\u2013\u2014]+\s+(?P<summary>.+)$")
FAMILY = re.compile(r"[-_.]")


def man_files(root: str, sections: list[int | str]) -> list[Path]:
    """The pages of `root/man<section>/` (English, top level), without symbolic links."""
    found = []
    for section in sections:
        folder = Path(root) / f"man{section}"
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    return found


def page_family(path: Path) -> str:
    """The program family of a page: its name up to the first `-`, `_` or `.` (`git-log.1.gz` -> `git`)."""
    return FAMILY.split(path.name)[0]


def page_source(path: Path) -> bytes | None:
    """The page's roff source up to the end of its DESCRIPTION section; None for a `.so` alias or no DESCRIPTION."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    body = b"\n".join(line for line in raw.splitlines() if not line.startswith((b'.\\"', b"'\\\"")))
    if body.lstrip().startswith(b".so "):
        return None
    headings = list(SECTION_MACRO.finditer(raw))
    for current, following in zip(headings, [*headings[1:], None]):
        if current.group(1).strip().upper() == b"DESCRIPTION":
            return raw[: following.start()] if following else raw
    return None


def render(source: bytes) -> str:
    """groff's plain-text rendering (one line per paragraph: the line length is 3000 characters)."""
    result = subprocess.run(GROFF, input=source, capture_output=True, timeout=60)
    return result.stdout.decode("utf-8", errors="replace")


def sections(text: str) -> dict[str, list[str]]:
    """Rendered page -> {HEADING: [paragraphs]}; headings start at column 0, paragraphs are indented blocks."""
    found: dict[str, list[str]] = {}
    heading, block = None, []
    for line in [*text.splitlines(), ""]:
        if line and not line[0].isspace():
            heading, block = line.strip().upper(), []
            found.setdefault(heading, [])
        elif not line.strip():
            if heading and block:
                found[heading].append(squash(" ".join(block)))
            block = []
        else:
            block.append(line.strip())
    return found


def page_record(path: Path) -> dict | None:
    """The pair of one page (summary, first prose paragraph of DESCRIPTION), or None."""
    try:
        source = page_source(path)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        log.debug("%s: unreadable (%s)", path, err)
        return None
    if source is None:
        return None
    parts = sections(render(source))
    name = NAME_LINE.match(" ".join(parts.get("NAME", [])))
    paragraph = next((p for p in parts.get("DESCRIPTION", []) if prose(p, 8)), None)
    if not name or not paragraph or not prose(name.group("summary"), 2, 300, 0.5):
        return None
    page = path.name.removesuffix(".gz")
    return {"text": name.group("summary"), "text_pos": paragraph, "family": page_family(path), "page": page}


@dataclass
class ManPagePairs(CorpusPairs):
    """Summary line <-> first DESCRIPTION paragraph of every English manual page in `root`'s `sections`.

    `max_per_family` keeps a few pages of one program family (all `gcloud_*` pages are one family, `git-*` another);
    the build renders at most `render_per_family` pages of a family (16,631 gcloud pages here would take minutes).
    """

    root: str = "/usr/share/man"
    sections: list = field(default_factory=lambda: [1, 5, 7, 8])
    max_per_family: int | None = 100
    render_per_family: int = 500  # pages of one family rendered at build (a fixed choice by name hash): a cap

    name: ClassVar[str] = "manpages"

    def cache_name(self) -> str:
        """One cache per folder and set of sections."""
        return (
            f"{self.name}/{Path(self.root).as_posix().strip('/').replace('/', '_')}-{'-'.join(map(str, self.sections))}"
        )

    def build(self) -> list[dict]:
        """Render every page (all CPU cores) and keep those with a summary and a prose DESCRIPTION paragraph."""
        if shutil.which("groff") is None:
            raise DataError(f"{self.origin}: manual pages need groff (Debian: apt-get install groff-base)")
        files = capped_by_family(man_files(self.root, self.sections), page_family, str, self.render_per_family)
        if not files:
            raise DataError(
                f"{self.origin}: no manual pages under {self.root}/man{{{','.join(map(str, self.sections))}}}"
            )
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            records = [r for r in pool.map(page_record, files, chunksize=16) if r is not None]
        log.info("%s: %d of %d manual pages gave a pair", self.origin, len(records), len(files))
        return records
