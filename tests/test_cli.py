"""The installed entry points, run as a user would (subprocesses; each costs a few seconds of imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from embedexp.core.config import PROJECT_ROOT


def run_module(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """Run `python -m <module> <args>` with the test environment."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # a training subprocess
def test_multirun_writes_one_result_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_module(
        "embedexp.cli.train",
        "-m",
        "experiment=smoke",
        "pooling=mean,last",
        "trainer.max_epochs=1",
        "trainer.precision=32",  # ints on the command line, as a user types them
        "eval.precision=32",
        f"callbacks.clustering_eval.zero_shot_cache_dir={tmp_path / 'zero_shot'}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    names = set()
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        table = pd.read_csv(job / "clustering_results.csv")  # the final metrics are the last evaluation's scores
        tasks = [t["name"] for t in metrics["task_set"]["tasks"]]
        assert sorted(c for c in table.columns if c.endswith("Clustering")) == sorted(tasks) and len(tasks) == 2
        assert metrics["val/clustering_mean"] == sum(metrics[f"val/{t}"] for t in tasks) / 2
        assert metrics["val/clustering_mean"] == table["clustering_mean"].iloc[-1]
        assert (job / "clustering_results.md").is_file()
        names.add(metrics["run_name"])
        assert metrics["provenance"]["machine"]["precision"] == {"train": "32-true", "eval": "32"}
    cache = f"callbacks.clustering_eval.zero_shot_cache_dir={tmp_path / 'zero_shot'}"
    expected = cache + ",eval.precision=32,experiment=smoke,pooling={},trainer.max_epochs=1,trainer.precision=32"
    assert names == {expected.format(p) for p in ("mean", "last")}


@pytest.mark.slow  # a subprocess
def test_bad_group_option_lists_valid_names(tmp_path):
    result = run_module("embedexp.cli.train", "pooling=median", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'pooling/median'" in result.stderr
    for valid in ("mean", "last", "weighted_mean", "final_token_attention"):
        assert valid in result.stderr


@pytest.mark.slow  # a subprocess
def test_eval_entry_writes_results_table(tmp_path):
    out = tmp_path / "eval"
    overrides = ["model=tiny", "tasks=tiny", "label=tiny probe", f"hydra.run.dir={out}"]
    result = run_module("embedexp.cli.eval", *overrides, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "eval_results.md").read_text()
    assert "DebianShortDescSectionClustering" in table and "clustering_mean" in table
    assert pd.read_csv(out / "eval_results.csv").loc[0, "model"] == "tiny probe"  # the label names the row
