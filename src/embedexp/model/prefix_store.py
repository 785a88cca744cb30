"""Frozen-layer hidden states on disk, shared by the runs of a sweep and by evaluation (`prefix_store:` in config).

An entry is one text's hidden states after the frozen layers [0, split) of a model, keyed by a namespace that hashes
everything that decides them (the weights of those layers, the model config, attention mode, packing, autocast
dtype, torch version) and by the text's prompted token ids (so tokenizer, prompt template, max length and truncation
are in the key by construction). A run whose prefix differs in any of these reads nothing of another's.

Storage is `diskcache` (SQLite index plus value files): writes are atomic, several processes (Hydra's joblib
launcher) may read and write at once, and the least recently used entries are evicted beyond `max_gb`. Each value
is safetensors bytes behind a CRC-32, so a damaged entry is detected, dropped and recomputed, never returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import struct
import zlib
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

log = logging.getLogger(__name__)


def hash_module_state(module: torch.nn.Module, digest=None, strip: str = ""):
    """SHA-1 (updated in place if given) of every parameter and buffer of `module`: names (less `strip`), dtypes,
    shapes and bytes."""
    digest = digest or hashlib.sha1()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        data = tensor.detach().cpu().contiguous()
        name = name.replace(strip, "") if strip else name
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest


class PrefixStore:
    """Per-text hidden states on disk under `folder`, at most `max_gb`, least recently used evicted first."""

    def __init__(self, folder: str | Path, max_gb: float = 8.0) -> None:
        """Open (or create) the store; an unreadable store is reported once and the run goes on without it."""
        import diskcache

        self.folder, self.max_bytes = Path(folder), int(max_gb * 2**30)
        self.hits = self.misses = self.corrupt = self.puts = 0
        self.warned_full = False
        try:
            self.cache = diskcache.Cache(
                str(self.folder), size_limit=self.max_bytes, eviction_policy="least-recently-used", cull_limit=16
            )
        except (sqlite3.DatabaseError, OSError) as error:
            log.error(
                "prefix store %s is unreadable (%s): frozen layers are recomputed this run; delete the folder to "
                "start it afresh",
                self.folder,
                error,
            )
            self.cache = None

    @property
    def enabled(self) -> bool:
        """Whether the store could be opened."""
        return self.cache is not None

    def get(self, key: str) -> torch.Tensor | None:
        """The stored tensor of `key`, or None (absent, or damaged: then dropped and counted in `corrupt`)."""
        if self.cache is None:
            return None
        try:
            value = self.cache.get(key, default=None, retry=True)
        except (sqlite3.DatabaseError, OSError) as error:
            log.warning("prefix store %s: read of %s failed (%s): recomputed", self.folder, key[:16], error)
            value = None
        if value is None:
            self.misses += 1
            return None
        tensor = decode(value)
        if tensor is None:
            self.corrupt += 1
            self.misses += 1
            log.warning("prefix store %s: entry %s is damaged: dropped and recomputed", self.folder, key[:16])
            self.cache.delete(key, retry=True)
            return None
        self.hits += 1
        return tensor

    def get_many(self, keys: list[str]) -> list[torch.Tensor | None]:
        """`get` of each key, in one SQLite transaction (a batch's rows read together)."""
        if self.cache is None:
            return [None] * len(keys)
        with self.transaction():
            return [self.get(key) for key in keys]

    def put_many(self, items: list[tuple[str, torch.Tensor]]) -> None:
        """`put` of each (key, tensor), in one SQLite transaction (a batch's rows written together)."""
        if self.cache is None or not items:
            return
        with self.transaction():
            for key, tensor in items:
                self.put(key, tensor)

    def transaction(self):
        """diskcache's transaction context (one commit for many reads or writes); a no-op where it cannot start."""
        try:
            return self.cache.transact(retry=True)
        except (sqlite3.DatabaseError, OSError) as error:
            log.warning("prefix store %s: batched access unavailable (%s): entries read one by one", self.folder, error)
            return contextlib.nullcontext()

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Store one tensor (atomically; concurrent writers of the same key write the same value)."""
        if self.cache is None:
            return
        value = encode(tensor)
        try:
            self.warn_if_full(len(value))
            self.cache.set(key, value, retry=True)
        except (sqlite3.DatabaseError, OSError) as error:
            log.warning("prefix store %s: write failed (%s): this entry is not kept", self.folder, error)
            return
        self.puts += 1

    def warn_if_full(self, incoming: int) -> None:
        """Say once when a write will evict (the store is at its bound: older entries are recomputed when needed)."""
        if self.warned_full:
            return
        volume = self.cache.volume()
        if volume + incoming > self.max_bytes:
            self.warned_full = True
            log.warning(
                "prefix store %s is full (%.2f of %.2f GB): least recently used entries are evicted and recomputed "
                "when needed; raise prefix_store.max_gb to keep more",
                self.folder,
                volume / 2**30,
                self.max_bytes / 2**30,
            )

    def stats(self) -> dict[str, float]:
        """Hits, misses, damaged entries and size in GB (for logs and metrics)."""
        size = self.cache.volume() / 2**30 if self.cache is not None else 0.0
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt, "gb": round(size, 3)}

    def close(self) -> None:
        """Close the SQLite connection."""
        if self.cache is not None:
            self.cache.close()


def encode(tensor: torch.Tensor) -> bytes:
    """safetensors bytes of `tensor` behind their CRC-32."""
    body = save_tensors({"states": tensor.detach().cpu().contiguous()})
    return struct.pack("<I", zlib.crc32(body)) + body


def decode(value: bytes) -> torch.Tensor | None:
    """The tensor of an `encode`d value, or None when its checksum or layout is wrong."""
    if not isinstance(value, bytes) or len(value) < 4:
        return None
    (expected,) = struct.unpack("<I", value[:4])
    body = value[4:]
    if zlib.crc32(body) != expected:
        return None
    try:
        return load_tensors(body)["states"]
    except Exception:  # noqa: BLE001 - any parse failure of stored bytes means a damaged entry
        return None


def open_prefix_store(cfg) -> PrefixStore | None:
    """The store of a composed config's `prefix_store:` node (a `_target_`), or None where it is null."""
    from embedexp.core.instantiate import instantiate_node

    node = cfg.get("prefix_store")
    return instantiate_node(node) if node else None
