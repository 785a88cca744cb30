"""The synthesis output folder: Parquet shards written atomically, each with its own progress record; a manifest.

A shard `pairs-NNNNN.parquet` only ever appears complete (staged and renamed), and its Parquet metadata says
which source texts it covers and what was dropped, so a resumed run rebuilds its state from the shards alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embedexp.core.atomic import atomic_file, atomic_write_text
from embedexp.core.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ["text", "text_pos", "generator", "source", "seed"]
SHARD_GLOB = "pairs-*.parquet"
MANIFEST = "manifest.json"
META_KEY = b"embedexp.synthesis.shard"


@dataclass
class ShardInfo:
    """One shard: its file, rows, the source texts [start, end) it covers, its seed, time and drop counts."""

    index: int
    file: str
    rows: int
    start: int
    end: int
    seed: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    generator: dict = field(default_factory=dict)
    fingerprint: str = ""  # of the config that wrote it: a resume must match


def shard_name(index: int) -> str:
    """The file name of shard `index`."""
    return f"pairs-{index:05d}.parquet"


def write_shard(folder: Path, frame: pd.DataFrame, info: ShardInfo) -> Path:
    """Write a shard atomically, its ShardInfo stored in the Parquet schema metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(asdict(info))})
    path = folder / info.file
    with atomic_file(path) as staging:
        pq.write_table(table, staging)
    return path


def read_shard_info(path: Path) -> ShardInfo:
    """The ShardInfo stored in a shard."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        return ShardInfo(**json.loads(metadata[META_KEY]))
    except (KeyError, ValueError, TypeError, OSError, pa.ArrowException) as err:
        raise DataError(f"{path}: not a shard written by embedexp synth ({err}); move it out of the folder") from err


def list_shards(folder: Path) -> list[ShardInfo]:
    """The complete shards in a folder, in order; they must be numbered 0..n-1 and cover consecutive texts."""
    infos = [read_shard_info(path) for path in sorted(Path(folder).glob(SHARD_GLOB))]
    for expected, info in enumerate(infos):
        if info.index != expected or (expected and info.start != infos[expected - 1].end):
            raise DataError(f"{folder}: shards are not consecutive at {info.file}; move the folder's shards away")
    return infos


def read_pairs(folder: Path, infos: list[ShardInfo] | None = None) -> pd.DataFrame:
    """All rows of the folder's shards, in order (an empty frame with the standard columns when there are none)."""
    infos = list_shards(folder) if infos is None else infos
    frames = [pd.read_parquet(Path(folder) / info.file) for info in infos]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def remove_staging(folder: Path) -> int:
    """Delete staging files a killed run left behind (hidden `.pairs-*` / `.manifest.json-*`); returns how many."""
    stale = [p for pattern in (".pairs-*", f".{MANIFEST}-*", ".pairs.csv-*") for p in Path(folder).glob(pattern)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d half-written staging file(s) of an interrupted run", len(stale))
    return len(stale)


def clear_output(folder: Path) -> None:
    """Remove a previous run's shards, manifest and CSV (for `overwrite=true`)."""
    for path in [*Path(folder).glob(SHARD_GLOB), Path(folder) / MANIFEST, Path(folder) / "pairs.csv"]:
        path.unlink(missing_ok=True)


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: unreadable manifest ({err})") from err


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write the manifest atomically."""
    return atomic_write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, default=str))


def write_csv(folder: Path, frame: pd.DataFrame) -> Path:
    """All pairs as one CSV file, written atomically."""
    path = Path(folder) / "pairs.csv"
    with atomic_file(path) as staging:
        frame.to_csv(staging, index=False)
    return path
