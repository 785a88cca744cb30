"""The built wheel, installed (not editable) into a fresh venv, runs from any folder and writes only beside the user.

The venv sees the test environment's packages through a .pth file (no download, no second torch); embedexp itself is
the wheel's copy. The venv lies inside a git repository of its own, which an installed embedexp must not report.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from embedexp.core.config import PROJECT_ROOT

pytestmark = pytest.mark.slow

COMPOSE_EVERY_ENTRY_POINT = """
import sys
from importlib import metadata

from hydra.core.global_hydra import GlobalHydra

SHOW_PATHS = ["--cfg", "job", "--resolve", "--package", "paths"]
for entry_point in metadata.distribution("embedexp").entry_points:
    if entry_point.group != "console_scripts":
        continue
    GlobalHydra.instance().clear()
    print("ENTRY", entry_point.name, flush=True)
    if entry_point.name in ("embedexp-fetch-shared", "embedexp-contamination"):  # argparse: help from the wheel
        sys.argv = [entry_point.name, "--help"]
    elif entry_point.name == "embedexp":  # the dispatcher: `embedexp train ...`
        sys.argv = [entry_point.name, "train", *SHOW_PATHS]
    else:
        sys.argv = [entry_point.name, *SHOW_PATHS]
    try:
        entry_point.load()()
    except SystemExit as stop:
        if stop.code:
            raise
"""


def run(args: list, cwd: Path, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output when it fails (the timeout allows a heavily shared CPU)."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv folder, its environment variables): the wheel installed into a venv inside a foreign git repository."""
    root = tmp_path_factory.mktemp("wheel")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    run(["git", "init", "-q", root / "repo"], root, timeout=60)
    run([*git, "commit", "-q", "--allow-empty", "-m", "someone else's project"], root / "repo", timeout=60)
    dist = root / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    run([*build, "-w", dist, PROJECT_ROOT], root, timeout=300)
    (wheel,) = dist.glob("embedexp-*.whl")
    venv = root / "repo" / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], root, timeout=120)
    python = venv / "bin" / "python"
    # pip installs before the .pth exists, so it sees no other embedexp and leaves the test environment alone
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], root)
    (purelib,) = (venv / "lib").glob("python*/site-packages")
    # a bare path line: the test environment's own .pth files (its editable embedexp) are not processed
    (purelib / "_test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EMBEDEXP_CACHE_DIR", "EMBEDEXP_SHARED_DATA")}
    env.update(EMBEDEXP_HOME=str(root / "embedexp_home"), XDG_DATA_HOME=str(root / "xdg_data"), PYTHONUNBUFFERED="1")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = run([python, "-c", "import embedexp.core.config as c; print(c.__file__); print(c.CONFIG_DIR)"], root, env)
    module_file, config_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(purelib) and Path(config_dir) == purelib / "embedexp" / "conf"
    return venv, env, root


def test_wheel_trains_the_smoke_run_into_the_current_folder(installed):
    venv, env, root = installed
    before = snapshot(venv)
    work = root / "work"
    work.mkdir()
    run(["embedexp-train", "experiment=smoke"], work, with_shared_data(env))
    runs = list(work.glob("outputs/smoke/runs/*/metrics.json"))
    assert len(runs) == 1, f"no single run folder under {work / 'outputs'}: {runs}"
    metrics_file = runs[0]
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics["val/clustering_mean"] <= 1.0
    assert (metrics_file.parent / "adapter").is_dir()
    assert metrics["provenance"]["git_commit"] is None  # not the commit of the repository around the venv
    assert metrics["provenance"]["versions"]["embedexp"] == "0.1.0"
    assert any((root / "embedexp_home" / "gguf").iterdir())  # the tokenizer cache went to $EMBEDEXP_HOME
    assert snapshot(venv) == before  # nothing written into the installation


def with_shared_data(env: dict) -> dict:
    """The environment plus the test checkout's shared clustering data (the smoke and tiny tasks read it)."""
    from embedexp.core.config import default_shared_data_dir

    return dict(env, EMBEDEXP_SHARED_DATA=str(default_shared_data_dir()))


def test_every_entry_point_composes_its_packaged_config_from_any_folder(installed):
    venv, env, root = installed
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    result = run([venv / "bin" / "python", "-c", COMPOSE_EVERY_ENTRY_POINT], elsewhere, env)
    entries = result.stdout.split("ENTRY ")[1:]
    names = sorted(entry.split()[0] for entry in entries)
    commands = (
        "attention-maps", "contamination", "encode", "eval", "export", "fetch-shared", "fidelity", "mine", "report",
        "synth", "train",
    )  # fmt: skip
    assert names == ["embedexp", *(f"embedexp-{command}" for command in commands)]
    argparse_entries = ("embedexp-fetch-shared", "embedexp-contamination")
    assert all("--out" in next(e for e in entries if e.startswith(name)) for name in argparse_entries)
    for entry in (entry for entry in entries if not entry.startswith(argparse_entries)):
        assert f"cache_dir: {root / 'embedexp_home'}" in entry, entry
        assert f"shared_data_dir: {root / 'xdg_data' / 'embedexp' / 'clustering_data'}" in entry, entry
        assert "log_dir: outputs" in entry, entry
