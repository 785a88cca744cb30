"""Pairs from the documentation installed packages ship: a section's heading <-> its first prose paragraph.

- Markdown and reStructuredText files of Debian packages (`/usr/share/doc/*/**.md`, `**.rst`, gzip'ed too),
  parsed with markdown-it-py and docutils;
- the long descriptions of installed Python distributions (`*.dist-info/METADATA`, Markdown or reStructuredText);
- GNU info manuals (`/usr/share/info/*.info*`): a node's title <-> its first paragraph.
"""

from __future__ import annotations

import email.parser
import gzip
import hashlib
import logging
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.corpora import CorpusPairs, prose, squash

log = logging.getLogger(__name__)
GENERIC_HEADINGS = {
    "about",
    "acknowledgements",
    "acknowledgments",
    "api",
    "authors",
    "bugs",
    "build",
    "building",
    "changelog",
    "changes",
    "community",
    "compatibility",
    "configuration",
    "contact",
    "contents",
    "contributing",
    "contributors",
    "copyright",
    "credits",
    "dependencies",
    "description",
    "development",
    "documentation",
    "example",
    "examples",
    "faq",
    "features",
    "getting started",
    "help",
    "history",
    "how to contribute",
    "install",
    "installation",
    "installing",
    "introduction",
    "license",
    "licence",
    "links",
    "news",
    "notes",
    "overview",
    "quick start",
    "quickstart",
    "references",
    "release notes",
    "requirements",
    "resources",
    "see also",
    "summary",
    "support",
    "table of contents",
    "testing",
    "tests",
    "todo",
    "usage",
    "what is it",
}  # headings that say nothing about their section: no pair
SECTION_NUMBER = re.compile(r"^[\dA-Z]+(\.\d+)*\.?\s+")
INFO_NODE = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)")
UNDERLINE = re.compile(r"^([=*\-.~^#])\1{2,}\s*$")


def heading_pair(heading: str, paragraph: str) -> tuple[str, str] | None:
    """(heading, paragraph) when the heading names something (two words or more, not generic) and the paragraph
    reads as prose."""
    heading = squash(SECTION_NUMBER.sub("", heading).strip(" #:"))
    words = heading.lower().strip(".?!").split()
    if len(words) < 2 or " ".join(words) in GENERIC_HEADINGS or not prose(heading, 2, 200, 0.5):
        return None
    paragraph = squash(paragraph)
    return (heading, paragraph) if prose(paragraph, 10, 1000) else None


def markdown_sections(text: str) -> Iterator[tuple[str, str]]:
    """(heading, first paragraph under it) of a Markdown text, as plain text (markdown-it-py tokens)."""
    from markdown_it import MarkdownIt

    heading, want, in_heading = None, False, False
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading, want = False, True
        elif token.type == "inline" and (in_heading or want):
            plain = "".join(c.content if c.type in ("text", "code_inline") else " " for c in token.children or ())
            if in_heading:
                heading = plain
            elif heading:
                yield heading, plain
                want = False
        elif token.type not in ("paragraph_open", "paragraph_close"):
            want = want and token.type in ("html_block",)  # anything but a paragraph right after: no pair


def rst_sections(text: str) -> Iterator[tuple[str, str]]:
    """(section title, its first paragraph) of a reStructuredText text (docutils, quiet about unknown markup)."""
    from docutils import nodes
    from docutils.core import publish_doctree

    settings = {
        "report_level": 5,
        "halt_level": 5,
        "warning_stream": False,
        "doctitle_xform": False,
        "file_insertion_enabled": False,
        "raw_enabled": False,
    }
    try:
        tree = publish_doctree(text, settings_overrides=settings)
    except Exception as err:  # noqa: BLE001 - docutils raises many types on malformed input
        log.debug("docutils could not parse a document: %s", err)
        return
    for section in tree.findall(nodes.section):
        title = next((c for c in section.children if isinstance(c, nodes.title)), None)
        paragraph = next((c for c in section.children if isinstance(c, nodes.paragraph)), None)
        if title is not None and paragraph is not None:
            yield title.astext(), paragraph.astext()


def info_sections(text: str) -> Iterator[tuple[str, str]]:
    """(node title, first paragraph) of every node of a GNU info file."""
    for node in text.split("\x1f"):
        lines = node.strip("\n").splitlines()
        if not lines or not INFO_NODE.match(lines[0]):
            continue
        body = lines[1:]
        while body and not body[0].strip():
            body = body[1:]
        if len(body) < 3 or not UNDERLINE.match(body[1]):
            continue
        paragraphs = "\n".join(body[2:]).split("\n\n")
        first = next((p for p in paragraphs if p.strip() and not p.startswith("     ")), "")
        yield body[0], first


def read_text(path: Path) -> str:
    """A (gzip'ed) text file, undecodable bytes replaced."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def document_kind(path: Path) -> str | None:
    """'markdown', 'rst' or 'info' from the file name (a `.gz` suffix ignored), else None."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".md", ".markdown")):
        return "markdown"
    if name.endswith(".rst"):
        return "rst"
    if ".info" in name and not name.endswith((".png", ".jpg")):
        return "info"
    return None


PARSERS = {"markdown": markdown_sections, "rst": rst_sections, "info": info_sections}


def document_records(text: str, kind: str, family: str) -> list[dict]:
    """The pairs of one document."""
    records = []
    for heading, paragraph in PARSERS[kind](text):
        if pair := heading_pair(heading, paragraph):
            records.append({"text": pair[0], "text_pos": pair[1], "family": family})
    return records


def distribution_descriptions() -> Iterator[tuple[str, str, str]]:
    """(name, kind, long description) of every installed Python distribution that has one."""
    for dist in metadata.distributions():
        text = dist.read_text("METADATA")
        if not text:
            continue
        message = email.parser.Parser().parsestr(text)
        body = message.get_payload() or message.get("Description", "")
        kind = "markdown" if "markdown" in (message.get("Description-Content-Type") or "") else "rst"
        if isinstance(body, str) and body.strip():
            yield message.get("Name", "unknown"), kind, body


@dataclass
class DocPairs(CorpusPairs):
    """Heading <-> first paragraph of installed documentation: Debian packages' Markdown / reStructuredText files
    and info manuals under `roots`, and (`python_metadata`) the long descriptions of installed Python packages."""

    roots: list = field(default_factory=lambda: ["/usr/share/doc", "/usr/share/info"])
    python_metadata: bool = True
    max_per_family: int | None = 200

    name: ClassVar[str] = "docs"

    def cache_name(self) -> str:
        """One cache per set of roots and `python_metadata` (and Python environment)."""
        key = "\n".join([*map(str, self.roots), str(self.python_metadata), sysconfig.get_paths()["purelib"]])
        return f"{self.name}/{hashlib.sha1(key.encode()).hexdigest()[:12]}"

    def build(self) -> list[dict]:
        """Parse every document (one process: docutils and markdown-it are fast enough for these few thousand)."""
        records, documents = [], 0
        for root in map(Path, self.roots):
            for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
                kind = document_kind(path)
                if kind is None:
                    continue
                family = f"{root.name}:{path.relative_to(root).parts[0].split('.info')[0]}"
                try:
                    records += document_records(read_text(path), kind, family)
                except (OSError, EOFError, gzip.BadGzipFile) as err:
                    log.debug("%s: unreadable (%s)", path, err)
                documents += 1
        if self.python_metadata:
            for name, kind, body in distribution_descriptions():
                records += document_records(body, kind, f"pypi:{name.lower()}")
                documents += 1
        if not documents:
            raise DataError(f"{self.origin}: no documentation under {self.roots} (and no Python package metadata)")
        log.info("%s: %d heading pairs from %d documents", self.origin, len(records), documents)
        return records
