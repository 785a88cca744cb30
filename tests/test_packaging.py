"""Packaging in a checkout: which conf/ is read, where caches and shared data go, what pyproject declares."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from embedexp.core.config import (
    CONFIG_DIR,
    INSTALLED,
    PROJECT_ROOT,
    checkout_root,
    default_cache_dir,
    default_shared_data_dir,
)
from embedexp.core.provenance import git_commit

from .conftest import compose_config

# libraries whose private attributes (or file formats) embedexp uses: each needs a tested upper bound
PRIVATE_API_LIBRARIES = ("transformers", "lightning", "mteb", "peft", "sentence-transformers", "wandb")


def declared_requirements() -> dict[str, Requirement]:
    """pyproject's [project] dependencies by normalised distribution name."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {normalise(r.name): r for r in requirements}


def normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> set[str]:
    """Top-level names of every absolute import in src/embedexp (module level or inside functions)."""
    names = set()
    for path in (PROJECT_ROOT / "src" / "embedexp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"embedexp", "__future__"}


def test_a_checkout_reads_the_repository_conf():
    assert not INSTALLED
    assert CONFIG_DIR == PROJECT_ROOT / "conf"
    assert checkout_root() == PROJECT_ROOT


def test_cache_dir_is_the_env_variable_then_embedexp_home_then_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBEDEXP_CACHE_DIR", raising=False)
    monkeypatch.delenv("EMBEDEXP_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "embedexp"
    monkeypatch.setenv("EMBEDEXP_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home"
    monkeypatch.setenv("EMBEDEXP_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    cfg = compose_config("train", ["experiment=smoke"], tmp_path / "run")
    assert cfg.model.backbone.cache_dir == str(tmp_path / "cache")
    assert cfg.paths.log_dir == "outputs"  # Hydra's convention: relative to the current folder


def test_shared_data_defaults_beside_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBEDEXP_SHARED_DATA", raising=False)
    assert default_shared_data_dir() == PROJECT_ROOT.parent / "shared" / "clustering_data"
    monkeypatch.setenv("EMBEDEXP_SHARED_DATA", str(tmp_path))
    cfg = compose_config("eval", ["tasks=tiny"], tmp_path / "run")
    assert cfg.tasks.twenty_newsgroups.path == str(tmp_path / "20ng_subjects.jsonl.gz")


@pytest.mark.skipif(not (PROJECT_ROOT / ".git").exists(), reason="not a git checkout")
def test_git_commit_of_the_checkout():
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", git_commit() or "")


def test_git_commit_is_none_outside_a_checkout(monkeypatch):
    monkeypatch.setattr("embedexp.core.provenance.checkout_root", lambda: None)
    assert git_commit() is None


def test_every_imported_package_is_declared():
    declared = declared_requirements()
    distributions = metadata.packages_distributions()
    missing = []
    for module in sorted(imported_top_level_modules()):
        names = {normalise(d) for d in distributions.get(module, [module])}
        if not names & set(declared):
            missing.append(f"{module} ({', '.join(sorted(names))})")
    assert not missing, f"imported in src/embedexp but not in pyproject dependencies: {missing}"


@pytest.mark.parametrize("library", PRIVATE_API_LIBRARIES)
def test_libraries_used_through_private_attributes_are_capped_above_the_tested_version(library):
    requirement = declared_requirements()[library]
    assert any(spec.operator == "<" for spec in requirement.specifier), f"{requirement} has no upper bound"
    assert requirement.specifier.contains(metadata.version(library), prereleases=True), "installed version excluded"
