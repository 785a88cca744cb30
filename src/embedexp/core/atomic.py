"""Atomic outputs: files and folders are written under a temporary name and renamed when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging path beside `path`; it replaces `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    os.chmod(staging, 0o666 & ~_umask())  # mkstemp creates 0600; finished files get the usual permissions
    try:
        yield Path(staging)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically, so a kill never leaves a truncated file that looks complete."""
    with atomic_file(path) as staging:
        staging.write_text(text, encoding="utf-8")
    return Path(path)


@contextmanager
def atomic_folder(target: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a staging folder beside `target`, renamed to `target` when the block succeeds.

    If `target` exists when the block finishes (e.g. another process finished it first), the staging copy is
    discarded, unless `replace` is set: then the old folder is swapped out (restored if the swap fails) and deleted.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if replace and target.exists():
            _swap_in(staging, target)
        else:
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace the folder `target` by `staging`; the old folder is restored if the rename fails."""
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
    try:
        target.rename(old / target.name)
        try:
            staging.rename(target)
        except OSError:
            (old / target.name).rename(target)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
