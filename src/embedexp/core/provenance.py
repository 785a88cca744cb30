"""What produced a result: seed, library versions and the git commit, stored next to every result."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from embedexp.core.config import checkout_root

LIBRARIES = ("embedexp", "torch", "transformers", "peft", "lightning", "hydra-core", "mteb", "sentence-transformers")


def git_commit() -> str | None:
    """The checkout's commit, suffixed `-dirty` when tracked files changed; None when installed (e.g. from a wheel)."""
    root = checkout_root()
    if root is None:  # an installed package may sit inside some other repository: never report that one's commit
        return None
    try:
        toplevel = run_git(root, "rev-parse", "--show-toplevel")
        if Path(toplevel).resolve() != root.resolve():
            return None
        commit = run_git(root, "rev-parse", "HEAD")
        dirty = run_git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return f"{commit}-dirty" if dirty else commit


def run_git(folder: Path, *args: str) -> str:
    """Run one git command in `folder` and return its stripped output."""
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape results."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(seed: int | None, precision: dict[str, str] | None = None) -> dict:
    """Seed, versions, commit and the machine (CPU, threads, resolved `precision` per phase) as one JSON-ready dict."""
    from embedexp.core.hardware import machine_info

    return {
        "seed": seed,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "machine": machine_info(**(precision or {})),
    }
