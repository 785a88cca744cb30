"""The tutorials and the README's Python example run exactly as written (tests/doc_blocks.py), on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedexp.core.config import PROJECT_ROOT

from .doc_blocks import code_blocks, page_environment, run_page

DOCS = PROJECT_ROOT / "docs"
SHARED_CACHE = PROJECT_ROOT / ".cache" / "embedexp"


def environment(tmp_path: Path) -> dict[str, str]:
    """This test's own cache (zero-shot scores land there), sharing the read-only model and corpus files."""
    return page_environment(SHARED_CACHE, tmp_path / "cache")


def test_blocks_are_files_commands_or_shown_text():
    blocks = code_blocks((DOCS / "tutorials" / "pooling.md").read_text())
    files = [b.title for b in blocks if b.title]
    assert files == ["my_poolings.py", "my_conf/pooling/last_k_mean.yaml"]
    assert any(b.lang == "bash" and "pooling=last_k_mean" in b.body for b in blocks)


@pytest.mark.slow  # four tiny trainings in subprocesses
def test_pooling_tutorial_runs_as_written(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    outputs = run_page(DOCS / "tutorials" / "pooling.md", work, environment(tmp_path))
    runs = sorted((work / "outputs" / "smoke" / "runs").iterdir())
    assert len(runs) == 2 and all((run / "metrics.json").is_file() for run in runs)
    grep = outputs[2].stdout  # the grep step: both runs' pooling, with its option
    assert grep.count("_target_: my_poolings.LastKMeanPooling") == 2 and "k: 4" in grep and "k: 1" in grep
    jobs = [p for p in next((work / "outputs" / "smoke" / "multiruns").iterdir()).iterdir() if p.name.isdigit()]
    assert len(jobs) == 2 and all((job / "metrics.json").is_file() for job in jobs)


@pytest.mark.slow  # four tiny trainings and three reports in subprocesses
def test_ablation_tutorial_runs_as_written(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    run_page(DOCS / "tutorials" / "ablation.md", work, environment(tmp_path))
    (sweep,) = (work / "outputs" / "smoke" / "multiruns").iterdir()
    report = (sweep / "report" / "report.md").read_text()
    assert "pooling=mean" in report and "pooling=last" in report
    assert json.loads((work / "smoke_pooling.json").read_text())["rows"]


@pytest.mark.slow  # a tiny training in a subprocess
def test_extending_page_runs_as_written(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    run_page(DOCS / "extending.md", work, environment(tmp_path))
    (run,) = (work / "outputs" / "my_smoke" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert [task["name"] for task in metrics["task_set"]["tasks"]] == ["MyStackOverflowTitles"]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "The topic of" in config and "r: 8" in config


@pytest.mark.slow  # a tiny training and an export in a subprocess
def test_readme_python_example_runs_as_written(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    (done,) = run_page(PROJECT_ROOT / "README.md", work, environment(tmp_path), name="python-example")
    assert done.stdout.rstrip().splitlines()[-1] == "(2, 64)"  # two texts, the tiny model's 64 dimensions
    assert (work / "outputs" / "python-run" / "export" / "sentence_transformers" / "modules.json").is_file()
