"""Pairs from the docstrings of installed Python code (the standard library and site-packages), read with `ast`.

A docstring's summary paragraph <-> its first prose paragraph after it. Files are parsed, never imported.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import sysconfig
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from embedexp.core.errors import DataError
from embedexp.data.corpora import CorpusPairs, capped_by_family, prose, squash

log = logging.getLogger(__name__)
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
SKIP_PARTS = {
    "test",
    "tests",
    "testing",
    "_vendor",
    "vendor",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "idlelib",
    "lib2to3",
}
SECTION_WORDS = (
    "args",
    "arguments",
    "parameters",
    "returns",
    "return",
    "raises",
    "yields",
    "example",
    "examples",
    "note",
    "notes",
    "attributes",
    "see also",
    "references",
    "warning",
    "usage",
    "type",
    "rtype",
)
MAX_FILE_BYTES = 2_000_000


def installed_roots() -> list[str]:
    """The standard library and this environment's site-packages."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["stdlib"], paths["purelib"], paths["platlib"]]))


def docstring_pair(doc: str) -> tuple[str, str] | None:
    """(summary, first prose paragraph after it) of a cleaned docstring, skipping parameter and example sections."""
    paragraphs = [p.strip() for p in doc.split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return None
    summary = squash(paragraphs[0])
    if not prose(summary, 4, 300):
        return None
    for paragraph in paragraphs[1:]:
        first = paragraph.splitlines()[0].strip().lower().rstrip(":")
        if first.startswith((">>>", "..", ":", "-", "*", "|", "@")) or first in SECTION_WORDS:
            break  # the prose part of the docstring is over
        if paragraph.startswith((" ", "\t")) or "::" in paragraph:
            continue
        if prose(squash(paragraph), 8, 800):
            return summary, squash(paragraph)
    return None


def file_records(path: str, family: str) -> list[dict]:
    """The pairs of one Python file's module, class and function docstrings."""
    try:
        source = Path(path).read_bytes()
        if len(source) > MAX_FILE_BYTES:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old code
            tree = ast.parse(source)
    except (SyntaxError, ValueError, OSError, RecursionError):
        return []
    records = []
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED) and (doc := ast.get_docstring(node)) and (pair := docstring_pair(doc)):
            records.append({"text": pair[0], "text_pos": pair[1], "family": family})
    return records


def python_files(roots: list[str]) -> list[tuple[str, str]]:
    """(file, family) of every `.py` file below the roots outside test and vendored folders; family = top package."""
    found = []
    for root in map(Path, roots):
        nested = root.name != "site-packages"
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts
            if SKIP_PARTS.intersection(parts[:-1]) or parts[-1].startswith("test_"):
                continue
            top = parts[0].removesuffix(".py")
            found.append((str(path), f"stdlib.{top}" if nested else top))
    return found


def _records_of(batch: list[tuple[str, str]]) -> list[dict]:
    """Worker: the records of a batch of files."""
    return [record for path, family in batch for record in file_records(path, family)]


@dataclass
class DocstringPairs(CorpusPairs):
    """Docstring summary <-> first prose paragraph, from `roots` (default: the stdlib and this environment's
    site-packages); `max_per_family` caps the pairs of one top-level package, `parse_per_family` the files parsed
    of one package when the corpus is built (torch alone has thousands)."""

    roots: list | None = None
    max_per_family: int | None = 500
    parse_per_family: int = 300  # files of one package parsed at build (a fixed choice by name hash): a cap
    exclude_packages: list = field(default_factory=lambda: ["embedexp"])

    name: ClassVar[str] = "docstrings"

    def cache_name(self) -> str:
        """One cache per set of roots."""
        roots = "\n".join(map(str, self.roots or installed_roots()))
        return f"{self.name}/{hashlib.sha1(roots.encode()).hexdigest()[:12]}-{self.parse_per_family}"

    def build(self) -> list[dict]:
        """Parse every file with `ast` on all CPU cores."""
        roots = [str(r) for r in (self.roots or installed_roots()) if Path(r).is_dir()]
        files = [(p, f) for p, f in python_files(roots) if f not in set(self.exclude_packages)]
        files = capped_by_family(files, lambda item: item[1], lambda item: item[0], self.parse_per_family)
        if not files:
            raise DataError(f"{self.origin}: no Python files under {self.roots or installed_roots()}")
        batches = [files[i : i + 200] for i in range(0, len(files), 200)]
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            records = [record for part in pool.map(_records_of, batches) for record in part]
        log.info("%s: %d docstring pairs from %d files", self.origin, len(records), len(files))
        return records
