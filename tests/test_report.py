"""The sweep report on a fabricated multirun folder: grouping, mean, Student-t CI, tables, chart, best config."""

from __future__ import annotations

import json
import math
import re
import time

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from embedexp.analysis.report.build import build_report
from embedexp.analysis.report.collect import parse_overrides
from embedexp.analysis.report.stats import confidence_interval
from embedexp.cli.arguments import positional_to_override
from embedexp.core.errors import ConfigError

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


def write_job(folder, num, overrides, scores=None, zero_shot=None, seed=None, task_set=None, status=None):
    """A multirun job folder as `embedexp.cli.train` leaves it (metrics.json only when the job finished)."""
    job = folder / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status:
        (job / "run_status.json").write_text(json.dumps(status))
    if scores is None:
        return job
    metrics = {"train/loss": 1.5, "val/loss": 2.0, "val/acc": 0.5}
    metrics.update({f"val/{k}": v for k, v in scores.items()})
    metrics.update({f"zero_shot/{k}": v for k, v in (zero_shot or {}).items()})
    metrics.update(run_name=",".join(overrides), provenance={"seed": seed})
    if task_set:
        metrics["task_set"] = task_set
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
    image = plt.imread(paths["png"])[..., :3]  # the bars are the plot's only coloured pixels (axes, text: grey)
    assert ((image.max(axis=-1) - image.min(axis=-1)) > 0.3).sum() > 500

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
    (tmp_path / "runs").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "runs")  # a folder typed through a symlink keeps its typed name
    assert positional_to_override([str(tmp_path / "linked")]) == [f'sweep_dir=["{tmp_path / "linked"}"]']


@pytest.mark.slow  # two subprocesses
def test_report_entry_point(sweep, tmp_path):
    log_dir = f"hydra.run.dir={tmp_path / 'log'}"
    result = run_module("embedexp", "report", str(sweep), "plot=false", log_dir, cwd=tmp_path)  # the dispatcher
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0.3200 ± 0.0497" in result.stdout
    assert (sweep / "report" / "report.md").is_file() and not (sweep / "report" / "report.png").exists()
    missing = run_module("embedexp.cli.report", f"sweep_dir={tmp_path / 'nothing'}", cwd=tmp_path)
    assert missing.returncode != 0 and "is not a folder" in missing.stderr


def write_wandb_job(folder, num, overrides, scores, seed, status="finished", exit_code=0):
    """A job folder holding only a W&B offline run (as when metrics.json was lost), closed like `embedexp.cli.train`
    closes it: `run/status` in the summary, and the exit code."""
    import wandb

    job = folder / str(num)
    job.mkdir(parents=True)
    config = {"seed": seed, "overrides": overrides, "run_name": ",".join(overrides)}
    run = wandb.init(project="embedexp-test", dir=str(job), mode="offline", config=config)
    run.log({f"val/{k}": v for k, v in scores.items()} | {"val/loss": 1.0})
    if status:
        run.summary.update({"run/status": status, "run/reason": "" if status == "finished" else "SIGTERM"})
        run.summary.update({"run/last_step": 7})
    run.finish(exit_code=exit_code)
    return job


def wait_for_exit_record(job, timeout_s=120):
    """The W&B service may still be flushing the log when finish() returns: wait until its reader sees the exit."""
    from embedexp.analysis.report.wandb_runs import find_runs, read_run

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = find_runs(job)
        if runs and read_run(runs[0]).exit_code is not None:
            return read_run(runs[0])
        time.sleep(0.5)
    raise AssertionError(f"{job}: no exit record after {timeout_s} s")


@pytest.mark.slow
def test_report_reads_wandb_runs_with_wandbs_reader_and_only_finished_ones(tmp_path):
    folder = tmp_path / "sweep"
    write_job(folder, 0, ["pooling=mean", "seed=1"], {"TaskA": 0.30, "clustering_mean": 0.30}, seed=1)
    write_wandb_job(folder, 1, ["pooling=mean", "seed=2"], {"TaskA": 0.34, "clustering_mean": 0.34}, seed=2)
    # closed with exit code 0 but no run/status (how SIGTERM'd runs ended before): never read as finished
    write_wandb_job(folder, 2, ["pooling=mean", "seed=3"], {"TaskA": 0.9, "clustering_mean": 0.9}, seed=3, status=None)
    write_wandb_job(
        folder, 3, ["pooling=mean", "seed=4"], {"TaskA": 0.9, "clustering_mean": 0.9}, 4, "interrupted", 143
    )
    runs = [wait_for_exit_record(folder / str(n)) for n in (1, 2, 3)]
    assert [r.exit_code for r in runs] == [0, 0, 143] and [r.finished for r in runs] == [True, False, False]
    assert runs[0].config["seed"] == 2 and runs[0].summary["val/TaskA"] == pytest.approx(0.34)

    paths = build_report([folder], tmp_path / "out", plot=False)
    row = pd.read_csv(paths["csv"]).set_index("config").loc["all runs"]
    assert row["n"] == 2 and row["seeds"] == "1 2" and row["TaskA mean"] == pytest.approx(0.32)
    markdown = paths["md"].read_text()
    assert "Jobs: 2 finished (1 read from W&B offline runs), 2 unfinished" in markdown
    assert f"`{folder / '3'}`: interrupted (SIGTERM), last step 7" in markdown
    assert f"`{folder / '2'}`: W&B state finished (W&B exit code 0)" in markdown
    # the W&B-only job (no .hydra folder: its overrides came from the W&B config) is invisible without read_wandb
    without = build_report([folder], tmp_path / "out2", plot=False, read_wandb=False)
    assert pd.read_csv(without["csv"])["n"].tolist() == [1]


def test_runner_up_shows_its_own_number_of_seeds(tmp_path):
    folder = tmp_path / "sweep"
    for num, (pooling, seed, value) in enumerate([("mean", 1, 0.5), ("mean", 2, 0.6), ("last", 1, 0.4)]):
        write_job(folder, num, [f"pooling={pooling}", f"seed={seed}"], {"TaskA": value}, seed=seed)
    paths = build_report([folder], tmp_path / "out", plot=False)
    best = pd.read_csv(paths["best"]).set_index("metric").loc["TaskA"]
    assert best["config"] == "pooling=mean" and best["runner_up_n"] == 1
    assert "pooling=last (fine_tuned): 0.4000 (n=1)" in paths["md"].read_text()  # the main table's n, not n=2


def test_failed_interrupted_and_killed_jobs_are_unfinished_with_reason_and_step(tmp_path):
    folder = tmp_path / "sweep"
    write_job(folder, 0, ["seed=1"], {"TaskA": 0.5}, seed=1, status={"status": "finished", "step": 60})
    write_job(folder, 1, ["seed=2"], status={"status": "failed", "reason": "FloatingPointError: nan", "step": 3})
    write_job(folder, 2, ["seed=3"], status={"status": "running", "reason": None, "step": 40})
    # metrics.json written but the run did not reach its final status: not counted either
    write_job(folder, 3, ["seed=4"], {"TaskA": 0.9}, seed=4, status={"status": "running", "step": 60})
    write_job(folder, 4, ["seed=5"])
    markdown = build_report([folder], tmp_path / "out", plot=False)["md"].read_text()
    assert "Jobs: 1 finished (0 read from W&B offline runs), 4 unfinished" in markdown
    assert f"`{folder / '1'}`: failed (FloatingPointError: nan), last step 3" in markdown
    assert f"`{folder / '2'}`: running (no final status: killed without cleanup" in markdown
    assert f"`{folder / '3'}`: running (metrics.json written, final status not" in markdown
    assert f"`{folder / '4'}`: unknown (no metrics.json and no run_status.json), last step None" in markdown
    assert "0.5000 (n=1)" in markdown and "0.9000" not in markdown


def task_set(set_id, *names):
    """A task set record as train writes it."""
    return {"id": set_id, "tasks": [{"name": n, "n_texts": 300, "hash": f"h{n}"} for n in names]}


def test_report_never_pools_or_ranks_runs_of_different_task_sets(tmp_path):
    folder = tmp_path / "sweep"
    five, two = task_set("aaaa", "TaskA", "TaskB", "TaskC"), task_set("bbbb", "TaskA")
    write_job(folder, 0, ["pooling=mean", "seed=1"], {"clustering_mean": 0.40}, seed=1, task_set=five)
    write_job(folder, 1, ["pooling=mean", "seed=2"], {"clustering_mean": 0.70}, seed=2, task_set=two)
    write_job(folder, 2, ["pooling=last", "seed=1"], {"clustering_mean": 0.45}, seed=1, task_set=five)
    paths = build_report([folder], tmp_path / "out", plot=False)
    table = pd.read_csv(paths["csv"]).set_index("config")
    assert table.loc["pooling=mean [tasks aaaa]", "n"] == 1 and table.loc["pooling=mean [tasks bbbb]", "n"] == 1
    assert table.loc["pooling=mean [tasks aaaa]", "clustering_mean mean"] == pytest.approx(0.40)
    best = pd.read_csv(paths["best"]).set_index("task_set")
    assert best.loc["aaaa", "config"] == "pooling=last [tasks aaaa]"
    assert best.loc["aaaa", "runner_up"] == "pooling=mean [tasks aaaa] (fine_tuned)"  # not the 0.70 of other tasks
    assert best.loc["bbbb", "config"] == "pooling=mean [tasks bbbb]" and pd.isna(best.loc["bbbb", "runner_up"])
    markdown = paths["md"].read_text()
    assert "## Task sets differ (2)" in markdown and "- `bbbb`: TaskA (300 texts, hash hTaskA)" in markdown
    runs = pd.read_csv(paths["runs"])
    assert set(runs["task_set"]) == {"aaaa", "bbbb"}


def write_eval_results(folder, model, scores, task_set_id=None):
    """An `embedexp eval` output folder: eval_results.csv with the model, its scores and the task set it scored."""
    folder.mkdir(parents=True)
    row = {"model": model, "pooling": "mean", "prompt": "none", **scores}
    if task_set_id:
        row["task_set"] = task_set_id
    pd.DataFrame([row]).to_csv(folder / "eval_results.csv", index=False)
    return folder


def test_baselines_join_the_report_only_when_they_scored_the_runs_tasks(tmp_path):
    folder = tmp_path / "sweep"
    tasks = task_set("aaaa", "TaskA", "TaskB")
    for seed, mean in [(1, 0.40), (2, 0.44)]:
        write_job(
            folder, seed, ["pooling=mean", f"seed={seed}"], {"TaskA": mean, "clustering_mean": mean}, None, seed, tasks
        )
    minilm = write_eval_results(tmp_path / "minilm", "minilm", {"TaskA": 0.55, "clustering_mean": 0.57}, "aaaa")
    paths = build_report([folder], tmp_path / "out", plot=True, baselines=[minilm])
    table = pd.read_csv(paths["csv"]).set_index(["config", "stage"])
    row = table.loc[("baseline minilm", "baseline")]
    assert row["n"] == 1 and row["clustering_mean mean"] == pytest.approx(0.57) and math.isnan(row["TaskA ci95"])
    assert table.loc[("all runs", "fine_tuned"), "clustering_mean mean"] == pytest.approx(0.42)
    markdown = paths["md"].read_text()
    assert re.search(r"\| baseline minilm +\| baseline +\| +1 \|.*0\.5700 \(n=1\)", markdown)
    assert "Stage `baseline`" in markdown and "not checked" not in markdown
    # without it the report has no baseline row
    plain = pd.read_csv(build_report([folder], tmp_path / "plain", plot=False)["csv"])
    assert "baseline" not in set(plain["stage"])
    # another task set: refused, naming the file; a missing folder: refused, naming it
    other = write_eval_results(tmp_path / "other", "minilm", {"clustering_mean": 0.6}, "bbbb")
    # eval folders only (no runs): one table, when they scored one task set
    tuned = write_eval_results(tmp_path / "tuned", "tuned", {"TaskA": 0.6, "clustering_mean": 0.62}, "aaaa")
    alone = pd.read_csv(build_report([], tmp_path / "alone", plot=False, baselines=[minilm, tuned])["csv"])
    assert sorted(alone["config"]) == ["baseline minilm", "baseline tuned"]
    with pytest.raises(ConfigError, match=r"baselines scored different task sets \(aaaa, bbbb\)"):
        build_report([], tmp_path / "mixed", plot=False, baselines=[minilm, other])
    with pytest.raises(ConfigError, match=r"other/eval_results.csv scored task set bbbb, the runs scored aaaa"):
        build_report([folder], tmp_path / "out2", plot=False, baselines=[other])
    with pytest.raises(ConfigError, match=r"baselines: .*/nowhere not found"):
        build_report([folder], tmp_path / "out3", plot=False, baselines=[tmp_path / "nowhere"])
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
    # an eval from before task sets were recorded: kept, said to be unchecked
    old = write_eval_results(tmp_path / "old", "minilm", {"clustering_mean": 0.57})
    markdown = build_report([folder], tmp_path / "out4", plot=False, baselines=[old])["md"].read_text()
    assert "task set not recorded, not checked" in markdown


def test_the_logger_is_bookkeeping_not_a_configuration(tmp_path):
    folder = tmp_path / "sweep"
    write_job(folder, 0, ["experiment=recipe_cpu", "seed=1", "logger=csv"], {"clustering_mean": 0.50}, seed=1)
    write_job(folder, 1, ["experiment=recipe_cpu", "seed=2"], {"clustering_mean": 0.52}, seed=2)
    table = pd.read_csv(build_report([folder], tmp_path / "out", plot=False)["csv"])
    assert list(table["config"]) == ["all runs"] and table.loc[0, "n"] == 2
