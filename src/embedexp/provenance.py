"""What produced a result: seed, library versions and the git commit, stored next to every result."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from embedexp.config import PROJECT_ROOT

LIBRARIES = ("embedexp", "torch", "transformers", "peft", "lightning", "hydra-core", "mteb", "sentence-transformers")


def git_commit() -> str | None:
    """The project's commit, suffixed `-dirty` when tracked files changed; None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


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
    from embedexp.hardware import machine_info

    return {
        "seed": seed,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "machine": machine_info(**(precision or {})),
    }
