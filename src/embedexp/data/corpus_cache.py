"""Corpora built once from this machine's files, cached as gzipped JSON Lines under the cache folder (atomically)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from embedexp.core.atomic import atomic_file

log = logging.getLogger(__name__)


def cache_path(cache_dir: str | os.PathLike, name: str, version: int) -> Path:
    """Where the corpus `name` of format `version` is cached."""
    return Path(cache_dir) / name / f"corpus-v{version}.jsonl.gz"


def cached_records(
    cache_dir: str | os.PathLike, name: str, version: int, build: Callable[[], list[dict]]
) -> list[dict]:
    """`cache_dir/<name>/corpus-v<version>.jsonl.gz` if it exists, else `build()`'s records written there first."""
    path = cache_path(cache_dir, name, version)
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    start = time.perf_counter()
    records = build()
    with atomic_file(path) as staging, gzip.open(staging, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    log.info(
        "%s corpus: %d records built in %.1f s, cached at %s", name, len(records), time.perf_counter() - start, path
    )
    return records
