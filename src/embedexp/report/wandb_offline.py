"""Read W&B offline runs (`wandb/offline-run-*/run-*.wandb`) without the W&B service: config, summary, exit code.

W&B 0.31 keeps an offline run as one binary log and ships no reader for it. The log is W&B's LevelDB-style record
log: a 7-byte file header (`:W&B`, magic 0xBEE1, version), then 32 KiB blocks of records, each with a 7-byte header
(CRC32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last) and a `wandb_internal_pb2.Record` protobuf.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B"
HEADER_LEN = 7
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbRun:
    """What the report needs from an offline run."""

    path: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None  # None: the run never finished (killed, crashed without an exit record)


def records(path: Path) -> list[bytes]:
    """The raw protobuf records of a `.wandb` log, reassembled across blocks."""
    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B run log")
    found, pending, pos = [], b"", HEADER_LEN
    while pos + HEADER_LEN <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER_LEN:  # too small for a record header: zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER_LEN])
        chunk = data[pos + HEADER_LEN : pos + HEADER_LEN + length]
        pos += HEADER_LEN + length
        if kind == FULL:
            found.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            found.append(pending + chunk)
        else:  # zero padding to the end of the block, or the unwritten tail of a killed run
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
    return found


def _items(update) -> dict:
    """`{key: value}` from config/summary update items (nested keys joined with '.')."""
    values = {}
    for item in update:
        key = item.key or ".".join(item.nested_key)
        try:
            values[key] = json.loads(item.value_json)
        except json.JSONDecodeError:
            values[key] = item.value_json
    return values


def read_run(path: Path) -> WandbRun:
    """Parse one `.wandb` log: the run's config (initial and updates), the latest summary values, the exit code."""
    from wandb.proto import wandb_internal_pb2 as pb  # imported here: W&B is heavy and optional for the report

    run = WandbRun(Path(path))
    for raw in records(path):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # a torn record at the end of a killed run's log
            continue
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.config.update(_items(record.run.config.update))
            run.summary.update(_items(record.run.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
    return run


def find_runs(root: Path) -> list[Path]:
    """Every W&B run log under `root` (offline runs, and synced or online run folders)."""
    return sorted(p for p in Path(root).rglob("*.wandb") if p.parent.name.startswith(("offline-run-", "run-")))
