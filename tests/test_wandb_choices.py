"""W&B runs of a sweep carry the names users typed: group choices as config keys, a readable name, the sweep's group."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from embedexp.analysis.report.wandb_runs import find_runs, wandb_command

from .test_cli import run_module
from .test_report import wait_for_exit_record

SWEEP = [
    "-m",
    "model=tiny",
    "tasks=tiny",
    "logger=wandb",
    "pooling=mean,last",
    "trainer.precision=32-true",
    "trainer.max_epochs=1",
    "data.batch_size=8",
    "data.source.max_pairs=16",
    "data.source.text_field=short",
    "~callbacks.clustering_eval",
]


def run_record(run_dir) -> dict:
    """The `run` record of an offline run's log, as W&B's own reader prints it (`wandb leet inspect --json`)."""
    lines = subprocess.run(
        [wandb_command(), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    return next(record["run"] for record in map(json.loads, lines) if record.get("type") == "run")


@pytest.mark.slow  # a two-job sweep in a subprocess
def test_sweep_runs_log_group_choices_name_and_sweep_group(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_module("embedexp.cli.train", *SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {}
    for job, pooling in (("0", "mean"), ("1", "last")):
        run = wait_for_exit_record(sweep / job)  # `wandb leet inspect --summary --json`
        choices = {key: run.config.get(key) for key in ("pooling", "prompt", "model", "data", "loss", "tasks")}
        assert choices == {
            "pooling": pooling,
            "prompt": "eol",
            "model": "tiny",
            "data": "debian",
            "loss": "infonce",
            "tasks": "tiny",
        }
        assert run.config["cfg"]["pooling"]["_target_"].endswith("MeanPooling" if pooling == "mean" else "TokenPooling")
        assert run.config["overrides"] and run.config["seed"] == 42  # what the sweep report reads
        record = run_record(find_runs(sweep / job)[0])
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert f"pooling={pooling}" in overrides and record["display_name"] == ",".join(sorted(overrides))
        seen[job] = record["run_group"]
    assert seen["0"] == seen["1"] == f"train/{sweep.name}"  # one group per sweep
