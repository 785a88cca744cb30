"""Run status: a run that did not finish is never read as finished (run_status.json, W&B exit code, the report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from embedexp.analysis.report.build import build_report
from embedexp.core.config import PROJECT_ROOT
from embedexp.core.run_status import read_status

from .test_report import wait_for_exit_record, write_job

RUN = [
    "model=tiny",
    "tasks=tiny",
    "logger=wandb",
    "trainer.precision=32-true",
    "trainer.max_epochs=2",
    "data.batch_size=8",
    "data.source.max_pairs=96",
    "data.source.text_field=short",
    "callbacks.step_checkpoint.every_n_train_steps=5",
    "callbacks.clustering_eval.zero_shot_cache_dir=null",
]


@pytest.mark.slow
def test_sigterm_run_is_interrupted_everywhere_and_the_report_lists_it_unfinished(tmp_path):
    sweep = tmp_path / "sweep"
    killed_dir = sweep / "1"
    kill = ["+callbacks.kill._target_=tests.helpers.KillAtStep", "+callbacks.kill.step=14"]
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedexp.cli.train",
            *RUN,
            *kill,
            "+callbacks.kill.signal_name=SIGTERM",
            f"hydra.run.dir={killed_dir}",
        ],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == 143, killed.stderr[-3000:]
    assert not (killed_dir / "metrics.json").exists()
    status = read_status(killed_dir)
    assert (status["status"], status["reason"], status["step"]) == ("interrupted", "SIGTERM", 14)
    # the W&B run ends with the shell's SIGTERM code and says why in its summary (it used to end with 0)
    run = wait_for_exit_record(killed_dir)
    assert run.exit_code == 143 and not run.finished
    assert run.summary["run/status"] == "interrupted" and run.summary["run/last_step"] == 14
    assert run.summary["val/clustering_mean"] > 0  # the zero-shot scores are there, and must not be counted

    write_job(sweep, 0, ["seed=1"], {"clustering_mean": 0.5}, seed=1, status={"status": "finished", "step": 24})
    markdown = build_report([sweep], tmp_path / "report", plot=False)["md"].read_text()
    assert "Jobs: 1 finished (0 read from W&B offline runs), 1 unfinished" in markdown
    assert f"`{killed_dir}`: interrupted (SIGTERM), last step 14" in markdown
    assert "0.5000 (n=1)" in markdown  # the table holds the finished job only


def test_finished_and_failed_runs_record_their_status(tmp_path):
    from omegaconf import open_dict

    from embedexp.cli.train import train

    from .conftest import compose_config
    from .test_reliability import RUN as CSV_RUN

    overrides = [o for o in CSV_RUN if not o.startswith("callbacks.")] + ["trainer.max_epochs=1", "callbacks=none"]
    cfg = compose_config("train", overrides, tmp_path / "ok")
    metrics = train(cfg)
    status = read_status(tmp_path / "ok")
    assert (status["status"], status["reason"], status["step"]) == ("finished", None, 12)
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text())["run/status"] == "finished"
    assert metrics["run/status"] == "finished"

    cfg = compose_config("train", overrides, tmp_path / "nan")
    with open_dict(cfg):
        cfg.loss = {"_target_": "tests.test_reliability.NanLoss"}
    with pytest.raises(FloatingPointError):
        train(cfg)
    status = read_status(tmp_path / "nan")
    assert status["status"] == "failed" and status["reason"].startswith("FloatingPointError: non-finite loss nan")
    assert status["step"] == 0
