"""The sweep report on a fabricated multirun folder: grouping, mean, Student-t CI, tables, chart, best config."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest
import yaml

from embedexp.report.collect import parse_overrides
from embedexp.report.command import build_report, positional_to_override
from embedexp.report.stats import confidence_interval

from .test_cli import run_module

T_975_2DF = 4.302652729749464  # scipy.stats.t.ppf(0.975, 2), from tables: 4.303
T_975_1DF = 12.706204736174698  # scipy.stats.t.ppf(0.975, 1), from tables: 12.706

# (pooling, seed) → (task A, task B) V-measure after training; zero-shot is (0.2, 0.1) for every mean-pooling job
JOBS = {
    ("mean", 1): (0.30, 0.50),
    ("mean", 2): (0.32, 0.56),
    ("mean", 3): (0.34, 0.53),
    ("last", 1): (0.40, 0.20),
    ("last", 2): (0.44, 0.22),
    ("max", 1): (0.10, 0.15),
}


def write_job(folder, num, overrides, scores=None, zero_shot=None, seed=None):
    """A multirun job folder as `embedexp.train` leaves it (metrics.json only when the job finished)."""
    job = folder / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if scores is None:
        return job
    metrics = {"train/loss": 1.5, "val/loss": 2.0, "val/acc": 0.5}
    metrics.update({f"val/{k}": v for k, v in scores.items()})
    metrics.update({f"zero_shot/{k}": v for k, v in (zero_shot or {}).items()})
    metrics.update(run_name=",".join(overrides), provenance={"seed": seed})
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


@pytest.fixture
def sweep(tmp_path):
    """Six finished jobs (3 configurations, 1–3 seeds) and one that died before writing metrics."""
    folder = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    for num, ((pooling, seed), (a, b)) in enumerate(JOBS.items()):
        scores = {"TaskA": a, "TaskB": b, "clustering_mean": (a + b) / 2}
        zero = {"TaskA": 0.2, "TaskB": 0.1, "clustering_mean": 0.15} if pooling == "mean" else None
        overrides = ["experiment=pooling_ablation_smoke", f"pooling={pooling}", f"seed={seed}"]
        write_job(folder, num, overrides, scores, zero, seed)
    write_job(folder, len(JOBS), ["experiment=pooling_ablation_smoke", "pooling=concat", "seed=1"])
    return folder


def test_confidence_interval_matches_student_t():
    mean, half, std, n = confidence_interval([0.30, 0.32, 0.34])
    assert (mean, std, n) == (pytest.approx(0.32), pytest.approx(0.02), 3)
    assert half == pytest.approx(T_975_2DF * 0.02 / math.sqrt(3), rel=1e-9)
    mean, half, std, n = confidence_interval([0.5])
    assert mean == 0.5 and n == 1 and math.isnan(half) and math.isnan(std)
    assert confidence_interval([0.4, 0.4])[1] == 0.0


def test_report_computes_mean_and_ci_per_configuration(sweep, tmp_path):
    out = tmp_path / "report"
    paths = build_report([sweep], out)
    assert {p.name for p in out.iterdir()} == {"report.md", "report.csv", "best.csv", "runs.csv", "report.png"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = pd.read_csv(paths["csv"]).set_index(["config", "stage"])
    # configurations are named by the varying key only; the shared experiment override is left out
    assert list(table.index) == [
        ("pooling=mean", "fine_tuned"),
        ("pooling=mean", "zero_shot"),
        ("pooling=last", "fine_tuned"),
        ("pooling=max", "fine_tuned"),
    ]
    mean_ft = table.loc[("pooling=mean", "fine_tuned")]
    assert mean_ft["n"] == 3 and mean_ft["seeds"] == "1 2 3" and mean_ft["pooling"] == "mean"
    assert mean_ft["TaskA mean"] == pytest.approx(0.32)
    assert mean_ft["TaskA ci95"] == pytest.approx(T_975_2DF * 0.02 / math.sqrt(3))
    # TaskB 0.50, 0.56, 0.53: mean 0.53, s = 0.03
    assert mean_ft["TaskB mean"] == pytest.approx(0.53)
    assert mean_ft["TaskB ci95"] == pytest.approx(T_975_2DF * 0.03 / math.sqrt(3))
    assert mean_ft["clustering_mean mean"] == pytest.approx((0.32 + 0.53) / 2)
    # two seeds: 0.40, 0.44 → s = 0.02·√2, t with 1 degree of freedom
    last = table.loc[("pooling=last", "fine_tuned")]
    assert last["TaskA mean"] == pytest.approx(0.42)
    assert last["TaskA ci95"] == pytest.approx(T_975_1DF * 0.02 * math.sqrt(2) / math.sqrt(2))
    # one seed: no interval
    assert table.loc[("pooling=max", "fine_tuned")]["n"] == 1
    assert math.isnan(table.loc[("pooling=max", "fine_tuned")]["TaskA ci95"])
    # zero-shot rows: identical across seeds → zero-width interval
    zero = table.loc[("pooling=mean", "zero_shot")]
    assert zero["TaskA mean"] == pytest.approx(0.2) and zero["TaskA ci95"] == pytest.approx(0.0)
    # val/loss and val/acc are not clustering scores
    assert not any(c.startswith(("loss", "acc")) for c in table.columns)

    best = pd.read_csv(paths["best"]).set_index("metric")
    assert list(best.index) == ["TaskA", "TaskB", "clustering_mean"]
    assert best.loc["TaskA", "config"] == "pooling=last" and best.loc["TaskB", "config"] == "pooling=mean"
    assert not best.loc["TaskA", "separated"]  # 0.42 ± 0.25 vs 0.32 ± 0.05 overlap

    markdown = paths["md"].read_text()
    assert "0.3200 ± 0.0497" in markdown  # TaskA, mean pooling
    assert "0.1000 (n=1)" in markdown  # TaskA, max pooling
    assert "6 finished (0 read from W&B offline runs), 1 unfinished" in markdown
    assert "`experiment=pooling_ablation_smoke`" in markdown
    assert f"{sweep / '6'}" in markdown  # the unfinished job is named

    runs = pd.read_csv(paths["runs"])
    assert len(runs) == 6 * 3 + 3 * 3  # 6 jobs × 3 metrics fine-tuned, 3 jobs × 3 metrics zero-shot


def test_report_stage_filter_and_pooled_folders(sweep, tmp_path):
    other = tmp_path / "later"
    write_job(other, 0, ["experiment=pooling_ablation_smoke", "pooling=max", "seed=2"], {"TaskA": 0.2, "TaskB": 0.25})
    paths = build_report([sweep, other], tmp_path / "out", stages=["fine_tuned"], plot=False)
    table = pd.read_csv(paths["csv"]).set_index("config")
    assert set(table["stage"]) == {"fine_tuned"} and "png" not in paths
    assert table.loc["pooling=max", "n"] == 2 and table.loc["pooling=max", "TaskA mean"] == pytest.approx(0.15)


def test_parse_overrides_and_positional_folders(tmp_path):
    assert parse_overrides(["pooling=mean", "+x.y=1", "++z=[1,2]", "~w"]) == {
        "pooling": "mean",
        "x.y": "1",
        "z": "[1,2]",
        "w": "<deleted>",
    }
    argv = positional_to_override([str(tmp_path), "confidence=0.9", "-cn", "report"])
    assert argv == [f'sweep_dir=["{tmp_path.resolve()}"]', "confidence=0.9", "-cn", "report"]


def test_report_entry_point(sweep, tmp_path):
    result = run_module("embedexp.report", str(sweep), "plot=false", f"hydra.run.dir={tmp_path / 'log'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0.3200 ± 0.0497" in result.stdout
    assert (sweep / "report" / "report.md").is_file() and not (sweep / "report" / "report.png").exists()
    missing = run_module("embedexp.report", f"sweep_dir={tmp_path / 'nothing'}", cwd=tmp_path)
    assert missing.returncode != 0 and "is not a folder" in missing.stderr


def write_wandb_job(folder, num, overrides, scores, seed):
    """A job folder holding only a finished W&B offline run (as when metrics.json was lost), with a config larger
    than one 32 KiB block of the run log so records span blocks."""
    import wandb

    job = folder / str(num)
    job.mkdir(parents=True)
    config = {"seed": seed, "overrides": overrides, "run_name": ",".join(overrides), "notes": "x" * 70_000}
    run = wandb.init(project="embedexp-test", dir=str(job), mode="offline", config=config)
    run.log({f"val/{k}": v for k, v in scores.items()} | {"val/loss": 1.0})
    run.finish()
    # the W&B service may still be flushing the log when finish() returns: wait for its exit record
    from embedexp.report.wandb_offline import find_runs, read_run

    deadline = time.monotonic() + 120
    while read_run(find_runs(job)[0]).exit_code is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return job


def test_report_reads_finished_wandb_offline_runs(tmp_path):
    from embedexp.report.wandb_offline import find_runs, read_run

    folder = tmp_path / "sweep"
    write_job(folder, 0, ["pooling=mean", "seed=1"], {"TaskA": 0.30, "clustering_mean": 0.30}, seed=1)
    write_wandb_job(folder, 1, ["pooling=mean", "seed=2"], {"TaskA": 0.34, "clustering_mean": 0.34}, seed=2)
    (run_log,) = find_runs(folder)
    run = read_run(run_log)
    assert run.exit_code == 0 and run.config["seed"] == 2 and len(run.config["notes"]) == 70_000
    assert run.summary["val/TaskA"] == pytest.approx(0.34)

    paths = build_report([folder], tmp_path / "out", plot=False)
    row = pd.read_csv(paths["csv"]).set_index("config").loc["all runs"]
    assert row["n"] == 2 and row["seeds"] == "1 2" and row["TaskA mean"] == pytest.approx(0.32)
    assert "1 read from W&B offline runs" in paths["md"].read_text()
    # the W&B-only job (no .hydra folder: its overrides came from the W&B config) is invisible without read_wandb
    without = build_report([folder], tmp_path / "out2", plot=False, read_wandb=False)
    assert pd.read_csv(without["csv"])["n"].tolist() == [1]
