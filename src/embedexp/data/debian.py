"""The offline Debian corpus: package descriptions labelled by archive section, from the machine's apt lists.

Records are split by *source* package into a training part (pair data) and an evaluation part (clustering
tasks), so no package family appears on both sides.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import subprocess

from embedexp.core.errors import DataError
from embedexp.data.corpus_cache import cached_records

log = logging.getLogger(__name__)

APT_LISTS = "/var/lib/apt/lists"
APT_HELPER = "/usr/lib/apt/apt-helper"
EVAL_PERCENT = 30
CORPUS_VERSION = 1
TAGS_VERSION = 1


def parse_records(text: str) -> list[dict[str, str]]:
    """Parse RFC-822 style apt records (blank-line separated, continuation lines start with a space)."""
    records = []
    for block in text.split("\n\n"):
        record: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                record[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                record[key] = value.strip()
        if record:
            records.append(record)
    return records


def clean_long_description(body: str, max_chars: int = 800) -> str:
    """Join the lines of a long description into prose; `.` lines are paragraph breaks."""
    paragraphs, current = [], []
    for line in body.splitlines():
        line = line.strip()
        if line == ".":
            if current:
                paragraphs.append(" ".join(current))
            current = []
        elif line:
            current.append(line.lstrip("*-+ ").strip() if line[:2] in ("* ", "- ", "+ ") else line)
    if current:
        paragraphs.append(" ".join(current))
    return " ".join(paragraphs)[:max_chars].strip()


def _read_translations() -> dict[str, str]:
    """Long English descriptions keyed by Description-md5, from the apt Translation-en lists when present."""
    texts: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(APT_LISTS, "*i18n_Translation-en*"))):
        try:
            raw = subprocess.run([APT_HELPER, "cat-file", path], capture_output=True, check=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            log.warning("cannot read %s: %s", path, err)
            continue
        for record in parse_records(raw):
            md5, description = record.get("Description-md5"), record.get("Description-en", "")
            if md5 and "\n" in description:
                texts[md5] = clean_long_description(description.split("\n", 1)[1])
    return texts


def split_of(source: str, eval_percent: int = EVAL_PERCENT) -> str:
    """Deterministic train/eval split of a source package by hash."""
    bucket = int(hashlib.sha1(source.encode()).hexdigest(), 16) % 100
    return "eval" if bucket < eval_percent else "train"


def dumpavail() -> str:
    """`apt-cache dumpavail`: every package record of this machine's apt lists."""
    try:
        return subprocess.run(["apt-cache", "dumpavail"], capture_output=True, check=True, text=True).stdout
    except FileNotFoundError as err:
        raise DataError(
            "the offline Debian corpus needs `apt-cache` (a Debian/Ubuntu machine); "
            "use data=pairs_file with your own pairs instead"
        ) from err


def build_corpus() -> list[dict[str, str]]:
    """Read all package records of this machine's apt lists into dicts with package, source, section, short, long."""
    dump = dumpavail()
    long_texts = _read_translations()
    corpus, seen = [], set()
    for record in parse_records(dump):
        package, description = record.get("Package"), record.get("Description", "").split("\n")[0].strip()
        if not package or not description or package in seen:
            continue
        seen.add(package)
        source = record.get("Source", package).split(" ")[0]
        corpus.append(
            dict(
                package=package,
                source=source,
                section=record.get("Section", "unknown").split("/")[-1],
                short=description,
                long=long_texts.get(record.get("Description-md5", ""), ""),
                split=split_of(source),
            )
        )
    if not corpus:
        raise DataError("`apt-cache dumpavail` returned no package records; run `apt-get update` once first")
    return corpus


def load_corpus(cache_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The Debian corpus, cached as gzipped JSON Lines under `cache_dir/debian/` after the first build."""
    return cached_records(cache_dir, "debian", CORPUS_VERSION, build_corpus)


def build_tags() -> list[dict]:
    """{package, tags} of every package record with debtags (`Tag:` fields, e.g. `use::gameplaying`)."""
    tagged, seen = [], set()
    for record in parse_records(dumpavail()):
        package, tags = record.get("Package"), record.get("Tag", "")
        if package and tags and package not in seen:
            seen.add(package)
            tagged.append({"package": package, "tags": sorted({t.strip() for t in tags.split(",") if t.strip()})})
    return tagged


def load_tags(cache_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Debtags by package, cached under `cache_dir/debtags/` (apart from the corpus: its tasks stay as cached)."""
    return {r["package"]: r["tags"] for r in cached_records(cache_dir, "debtags", TAGS_VERSION, build_tags)}


def train_texts(corpus: list[dict[str, str]], field: str) -> list[dict[str, str]]:
    """Training-split records with a `field` text that no evaluation-split record repeats (identical descriptions
    occur in other source packages)."""
    eval_texts = {" ".join(r[field].lower().split()) for r in corpus_texts(corpus, "eval", field)}
    return [r for r in corpus_texts(corpus, "train", field) if " ".join(r[field].lower().split()) not in eval_texts]


def corpus_texts(corpus: list[dict[str, str]], split: str, field: str) -> list[dict[str, str]]:
    """Records of one split that have a non-empty `field` ('short' or 'long')."""
    if field not in ("short", "long"):
        raise ValueError(f"Debian text field must be 'short' or 'long', got {field!r}")
    return [r for r in corpus if r["split"] == split and r[field].strip()]
