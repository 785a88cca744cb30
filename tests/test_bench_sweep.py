"""benchmarks/bench_sweep.py's log parser and tables: a multirun's console in, each job's stage seconds out."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    """A module of benchmarks/ (not a package) by its file."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sweep_logs = load("sweep_logs")
sweep_tables = load("sweep_tables")

CB = "[embedexp.evaluation.callback][INFO] - "
CONSOLE = f"""\
[2026-12-07 10:00:00,000][HYDRA] Launching 2 jobs locally
[2026-12-07 10:00:00,000][HYDRA] \t#0 : experiment=recipe_cpu seed=1
[2026-12-07 10:00:01,200][embedexp.core.hardware][INFO] - eval.precision=auto -> bf16
[2026-12-07 10:00:10,000]{CB}clustering evaluation (zero_shot, bf16): 5 tasks
[2026-12-07 10:00:30,500]{CB}clustering (zero_shot, 20 s): clustering_mean=0.4401 (A=0.4200, B=0.4602)
Epoch 0: 100%|██████████| 187/187 [01:00<00:00]
[2026-12-07 10:01:30,500]{CB}clustering evaluation (epoch, bf16): 5 tasks
[2026-12-07 10:01:40,500]{CB}clustering (epoch, 10 s): clustering_mean=0.4559 (A=0.4343, B=0.4775)
[2026-12-07 10:02:00,500]{CB}clustering evaluation (fit_end, bf16): 5 tasks
[2026-12-07 10:02:05,500]{CB}clustering (fit_end, 5 s): clustering_mean=0.4560 (A=0.4344, B=0.4776)
│ clustering_mean                    │ 0.4401 │ 0.4560 │ +0.0159 │
[2026-12-07 10:02:06,000][embedexp.training.run_callbacks][INFO] - LoRA adapter and pooling saved to /x/0/adapter
[2026-12-07 10:02:07,000][HYDRA] \t#1 : experiment=recipe_cpu seed=2
[2026-12-07 10:02:11,000]{CB}clustering evaluation (zero_shot, bf16): 5 tasks
[2026-12-07 10:02:11,020]{CB}zero-shot scores of this configuration read from the cache (84a29b6f5bc39b88)
[2026-12-07 10:02:11,020]{CB}clustering (zero_shot, 0 s): clustering_mean=0.4401 (A=0.4200, B=0.4602)
[2026-12-07 10:02:51,020]{CB}clustering evaluation (epoch, bf16): 5 tasks
[2026-12-07 10:02:53,020]{CB}clustering (epoch, 2 s): clustering_mean=0.4570 (A=0.4350, B=0.4790)
"""
END = sweep_logs.stamp("2026-12-07 10:03:00,000")
JOB0 = {"startup": 10.0, "zero_shot": 20.5, "training": 80.0, "evaluation": 15.0, "rest": 1.5, "total": 127.0}
JOB1 = {"startup": 4.0, "zero_shot": 0.02, "training": 40.0, "evaluation": 2.0, "rest": 6.98, "total": 53.0}


def test_console_gives_each_jobs_stages():
    jobs = sweep_logs.sweep_jobs(CONSOLE, END)
    assert [(j["number"], j["overrides"]) for j in jobs] == [
        (0, "experiment=recipe_cpu seed=1"),
        (1, "experiment=recipe_cpu seed=2"),
    ]
    assert {k: jobs[0][k] for k in JOB0} == pytest.approx(JOB0)
    assert {k: jobs[1][k] for k in JOB1} == pytest.approx(JOB1)
    for job in jobs:  # the stages split the job: nothing counted twice, nothing lost
        assert sum(job[s] for s in sweep_logs.STAGES) == pytest.approx(job["total"])


def test_a_jobs_file_log_is_read_instead_of_the_console():
    own = CONSOLE.split("#1 : experiment=recipe_cpu seed=2\n")[1].replace("10:02:53,020", "10:02:54,020")
    jobs = sweep_logs.sweep_jobs(CONSOLE, END, {1: own})
    assert jobs[1]["evaluation"] == pytest.approx(3.0)
    assert jobs[1]["rest"] == pytest.approx(5.98)
    assert {k: jobs[0][k] for k in JOB0} == pytest.approx(JOB0)  # no file log: the console


def test_a_job_without_evaluations_is_all_training_and_an_unfinished_one_is_ignored():
    console = CONSOLE.replace("clustering (epoch, 2 s)", "something else")
    job = sweep_logs.sweep_jobs(console, END)[1]
    assert (job["evaluation"], job["rest"], job["training"]) == (None, None, pytest.approx(48.98))
    grid = "[2026-12-07 10:00:00,000][HYDRA] \t#0 : pooling=mean prompt=none\n"
    assert sweep_logs.sweep_jobs(grid, END)[0]["total"] == 180.0


def measurement(label: str, scale: float, score: float) -> dict:
    """A fake measurement of two jobs, their times `scale` x JOB0/JOB1."""
    jobs = []
    for number, stages in enumerate((JOB0, JOB1)):
        scores = {"val": {"A": score, "clustering_mean": score}, "zero_shot": {"A": 0.4, "clustering_mean": 0.4}}
        jobs.append({"number": number, "overrides": f"experiment=recipe_cpu seed={number + 1}",
                     **{k: v * scale for k, v in stages.items()}, "scores": scores})  # fmt: skip
    return {"label": label, "wall_s": 200.0 * scale, "jobs": jobs}


def test_tables_give_minutes_ratios_and_intervals():
    base, cur = measurement("baseline", 1.0, 0.45), measurement("this tree", 0.5, 0.46)
    rows = sweep_tables.sweep_rows(base, cur)
    assert len(rows) == 3 + 3 + 3 and all(len(r) == len(sweep_tables.SWEEP_COLUMNS) for r in rows)
    assert rows[0][:3] == ["baseline", "#0", "seed=1"] and rows[0][-1] == pytest.approx(127 / 60, abs=1e-3)
    assert rows[2][2] == "whole command (wall)" and rows[2][-1] == pytest.approx(200 / 60, abs=1e-3)
    ratios = rows[6:]
    assert ratios[0][0] == sweep_tables.RATIO and ratios[0][-1] == 0.5
    assert ratios[1][4] is None  # job 1's zero-shot is under a second in the baseline: no ratio
    columns, quality = sweep_tables.quality_rows(base, cur)
    assert columns == ["tree", "job", "stage", "A", "clustering_mean"]
    assert quality[-2][1] == "mean ± 95% CI (n=2)" and quality[-2][-1] == "0.4600 ± 0.0000"
