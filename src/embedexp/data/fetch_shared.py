"""Build the shared clustering data (`../shared/clustering_data`) from its public sources: needs internet.

    python -m embedexp fetch_shared --out <folder>      # then EMBEDEXP_SHARED_DATA=<folder>

- `20ng_subjects.jsonl.gz`, `20ng_full.jsonl.gz`: GitHub yao8839836/text_gcn,
  `data/20ng/20news-bydate-{train,test}/<group>/<id>` (the repository archive, streamed); label = newsgroup
- `stackoverflow_titles.jsonl.gz`: GitHub jacoxu/StackOverflow, `rawText/title_StackOverflow.txt` +
  `rawText/label_StackOverflow.txt` (tag numbers 1-20)
- `biomedical_titles.jsonl.gz`: GitHub jacoxu/STC2, `dataset/Biomedical.txt` + `dataset/Biomedical_gnd.txt`

Each output is gzipped JSON Lines `{"sentences": text, "labels": label}` (20ng_full adds `body`), written atomically.
`--source-dir` reads the same files from local copies (a folder per repository, or the 20ng archive) instead.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

from embedexp.core.atomic import atomic_file
from embedexp.core.errors import DataError

log = logging.getLogger(__name__)

RAW = "https://raw.githubusercontent.com"
TEXT_GCN_ARCHIVE = "https://codeload.github.com/yao8839836/text_gcn/tar.gz/refs/heads/master"
STACKOVERFLOW_FILES = ("rawText/title_StackOverflow.txt", "rawText/label_StackOverflow.txt")
BIOMEDICAL_FILES = ("dataset/Biomedical.txt", "dataset/Biomedical_gnd.txt")
STACKOVERFLOW = tuple(f"{RAW}/jacoxu/StackOverflow/master/{f}" for f in STACKOVERFLOW_FILES)
BIOMEDICAL = tuple(f"{RAW}/jacoxu/STC2/master/{f}" for f in BIOMEDICAL_FILES)
NEWSGROUP_MEMBER = re.compile(r"(?:^|/)20news-bydate-(train|test)/([^/]+)/(\d+)$")
TIMEOUT_S = 120


OFFLINE_HINT = (
    "Without internet: build the files on a machine that has it and copy them into $EMBEDEXP_SHARED_DATA, "
    "or pass local copies with --source-dir; or score the Debian tasks only with tasks=offline_debian"
)


def open_source(location: str) -> io.BufferedIOBase:
    """A URL (http/https) or a local file, opened for binary reading; a failed download is one `DataError`."""
    if location.startswith(("http://", "https://")):
        log.info("downloading %s", location)
        try:
            return urllib.request.urlopen(location, timeout=TIMEOUT_S)  # noqa: S310 - fixed public sources
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise DataError(f"download failed: {location} ({reason}). {OFFLINE_HINT}.") from error
    return open(location, "rb")


def read_lines(location: str) -> list[str]:
    """The lines of a text file (UTF-8, undecodable bytes replaced), newline stripped."""
    with open_source(location) as handle:
        return handle.read().decode("utf-8", errors="replace").splitlines()


def paired_rows(texts: list[str], labels: list[str], source: str) -> list[dict]:
    """`{"sentences", "labels"}` rows from a text file and its label file (one per line, same order)."""
    if len(texts) != len(labels):
        raise DataError(f"{source}: {len(texts)} texts but {len(labels)} labels")
    return [{"sentences": t.strip(), "labels": label.strip()} for t, label in zip(texts, labels) if t.strip()]


def parse_newsgroup_post(raw: bytes) -> tuple[str, str]:
    """(subject, body) of a 20 Newsgroups post (Latin-1): the `Subject:` header and the text after the headers."""
    text = raw.decode("latin-1").replace("\r\n", "\n").replace("\r", "\n")
    header, _, body = text.partition("\n\n")
    subject = next((line[len("Subject:") :].strip() for line in header.splitlines() if line.startswith("Subject:")), "")
    return subject, body.strip()


def newsgroup_posts(archive: str) -> Iterator[tuple[str, str, str]]:
    """(group, subject, body) of every post in a tar.gz holding `20news-bydate-{train,test}/<group>/<id>` files,
    streamed (the text_gcn repository archive, or the original 20news-bydate.tar.gz), train before test."""
    posts: dict[str, list] = {"train": [], "test": []}
    with open_source(archive) as handle, tarfile.open(fileobj=handle, mode="r|gz") as tar:
        for member in tar:
            found = NEWSGROUP_MEMBER.search(member.name)
            if not (member.isfile() and found):
                continue
            split, group, number = found.groups()
            subject, body = parse_newsgroup_post(tar.extractfile(member).read())
            posts[split].append((group, int(number), subject, body))
    if not posts["train"] and not posts["test"]:
        raise DataError(f"{archive}: no 20news-bydate-{{train,test}}/<group>/<id> files in the archive")
    for split in ("train", "test"):
        for group, _, subject, body in sorted(posts[split]):
            yield group, subject, body


def write_jsonl_gz(path: Path, rows: Iterable[dict]) -> int:
    """Write rows as gzipped JSON Lines atomically; returns the number of rows."""
    count = 0
    with atomic_file(path) as staging, gzip.open(staging, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def build_newsgroups(out: Path, archive: str = TEXT_GCN_ARCHIVE) -> dict[str, int]:
    """`20ng_subjects.jsonl.gz` (subject lines) and `20ng_full.jsonl.gz` (with bodies), label = newsgroup."""
    posts = [(group, subject, body) for group, subject, body in newsgroup_posts(archive) if subject]
    subjects = ({"sentences": s, "labels": g} for g, s, _ in posts)
    full = ({"sentences": s, "body": b, "labels": g} for g, s, b in posts)
    return {
        "20ng_subjects.jsonl.gz": write_jsonl_gz(out / "20ng_subjects.jsonl.gz", subjects),
        "20ng_full.jsonl.gz": write_jsonl_gz(out / "20ng_full.jsonl.gz", full),
    }


def build_paired(out: Path, name: str, texts: str, labels: str) -> dict[str, int]:
    """A title file and its label file as `<name>`."""
    rows = paired_rows(read_lines(texts), read_lines(labels), texts)
    return {name: write_jsonl_gz(out / name, rows)}


def fetch_shared(out: str | Path, source_dir: str | Path | None = None) -> dict[str, int]:
    """Build all shared-data files in `out` (from the public sources, or local copies under `source_dir`)."""
    out = Path(out)
    local = Path(source_dir) if source_dir else None
    archive = str(local / "text_gcn.tar.gz") if local else TEXT_GCN_ARCHIVE
    stack = [str(local / "StackOverflow" / f) for f in STACKOVERFLOW_FILES] if local else STACKOVERFLOW
    bio = [str(local / "STC2" / f) for f in BIOMEDICAL_FILES] if local else BIOMEDICAL
    counts = build_newsgroups(out, archive)
    counts |= build_paired(out, "stackoverflow_titles.jsonl.gz", *stack)
    counts |= build_paired(out, "biomedical_titles.jsonl.gz", *bio)
    return counts
