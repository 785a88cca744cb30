"""The commands that measure write result files: the report's and the fidelity study's tables, with the runs' source."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from embedexp.analysis.report.build import build_report
from embedexp.analysis.report.result_file import write_fidelity_result, write_report_result
from embedexp.core.config import PROJECT_ROOT
from embedexp.core.results import merge_sources, read_result_table

from .test_cli import run_module
from .test_report import write_job


def machine(speedup: float) -> dict:
    """A machine record as `embedexp.core.provenance` writes it."""
    probe = {"bf16_speedup": speedup, "fp32_gflops": 100.0}
    return {"cpu_model": "Test CPU", "cpu_capability": "AVX512", "threads": 2, "precision": {"train": "bf16-mixed"},
            "precision_probe": probe}  # fmt: skip


@pytest.fixture
def sweep(tmp_path):
    """Two poolings × two seeds, each job with the provenance, run time and peak memory train() records."""
    folder = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    for num, (pooling, seed, score) in enumerate(
        [("mean", 1, 0.40), ("mean", 2, 0.42), ("last", 1, 0.5), ("last", 2, 0.5)]
    ):
        job = write_job(folder, num, [f"pooling={pooling}", f"seed={seed}"], {"TaskA": score, "clustering_mean": score},
                        {"TaskA": 0.3, "clustering_mean": 0.3}, seed)  # fmt: skip
        metrics = json.loads((job / "metrics.json").read_text())
        metrics["provenance"] = {"seed": seed, "git_commit": f"commit{seed}", "machine": machine(2.0 + seed)}
        metrics.update({"time/total_s": 60.0 * (num + 1), "memory/peak_rss_mb": 1024.0 * (num + 1)})
        (job / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_report_result_file_holds_the_reports_cells_cost_and_the_runs_source(sweep, tmp_path):
    paths = build_report([sweep], tmp_path / "report", plot=False)
    path = write_report_result(paths, tmp_path / "results" / "r.json", "python -m embedexp report x", "pooling")
    table = read_result_table(path)
    assert table.columns == ["config", "stage", "n", "TaskA", "clustering_mean", "minutes per run", "peak RSS (GB)"]
    rows = {(row[0], row[1]): row for row in table.rows}
    mean = rows[("pooling=mean", "fine_tuned")]
    expected = pd.read_csv(paths["csv"]).set_index(["config", "stage"]).loc[("pooling=mean", "fine_tuned")]
    assert mean[3] == f"{expected['TaskA mean']:.4f} ± {expected['TaskA ci95']:.4f}"
    assert mean[5:] == ["1.0-2.0", "2.0"]  # minutes of jobs 0 and 1; the larger peak
    assert rows[("pooling=last", "fine_tuned")][3] == "0.5000 ± 0.0000"
    source = table.source
    assert source["git_commit"] == "commit1 / commit2" and source["runs"] == 4
    assert source["machine"]["cpu_model"] == "Test CPU" and source["machine"]["bf16_speedup"] == "3.00-4.00"
    line = table.provenance_line()
    assert "commit commit1 / commit2" in line and "(4 runs)" in line and "precision train=bf16-mixed" in line


def test_fidelity_result_file_keeps_numbers_and_empty_cells(tmp_path):
    frame = pd.DataFrame(
        {"metric": ["clustering_mean", "clustering_mean"], "n_docs": ["100", "callback"], "n_runs": [10, 10],
         "spearman": [0.8671, 0.84], "ci_low": [0.44, 0.43], "ci_high": [1.0, 0.98], "seconds": [16.5, math.nan]}
    )  # fmt: skip
    frame.to_csv(tmp_path / "fidelity.csv", index=False)
    path = write_fidelity_result(
        {"csv": tmp_path / "fidelity.csv"}, tmp_path / "f.json", "python -m embedexp fidelity x", "t", "bf16"
    )
    table = read_result_table(path)
    assert table.source["machine"]["precision"] == {"eval": "bf16"}  # the precision the jobs were scored in
    assert table.rows[0] == ["clustering_mean", "100", 10, 0.8671, 0.44, 1.0, 16.5]  # n_docs: a size or a name
    assert table.rows[1][1] == "callback" and table.rows[1][-1] is None
    assert table.source["machine"]["cpu_capability"]  # scored on this machine


def test_merged_source_of_one_machine_and_date_stays_plain():
    one = {"git_commit": "abc", "date": "2026-12-01", "machine": machine(4.0)}
    merged = merge_sources([one, one])
    assert merged["git_commit"] == "abc" and merged["date"] == "2026-12-01" and merged["machine"]["threads"] == "2"
    later = dict(one, date="2026-12-03")
    assert merge_sources([later, one])["date"] == "2026-12-01 to 2026-12-03"


def test_a_source_merged_again_keeps_its_probe_spread():
    """A result file grown across sessions merges its earlier, merged source with new runs' sources."""
    earlier = merge_sources([{"machine": machine(1.89)}, {"machine": machine(2.29)}])
    assert earlier["machine"]["bf16_speedup"] == "1.89-2.29"
    assert merge_sources([earlier, {"machine": machine(1.92)}])["machine"]["bf16_speedup"] == "1.89-2.29"
    assert merge_sources([earlier, {"machine": machine(2.5)}])["machine"]["bf16_speedup"] == "1.89-2.50"


@pytest.mark.slow  # a subprocess
def test_report_command_writes_the_result_file(sweep, tmp_path):
    log_dir = f"hydra.run.dir={tmp_path / 'log'}"
    result = run_module(
        "embedexp", "report", str(sweep), "plot=false", "result_file=results/r.json", log_dir, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = read_result_table(tmp_path / "results" / "r.json")
    assert (
        table.command.startswith("python -m embedexp report sweep_dir=")
        and "result_file=results/r.json" in table.command
    )
    assert str(tmp_path) not in table.command  # paths below the current folder are relative
    assert len(table.rows) == 4


@pytest.mark.slow  # a pytest subprocess
def test_measured_test_run_writes_its_counts_time_and_memory(tmp_path):
    target = tmp_path / "make_test.json"
    env = dict(os.environ, EMBEDEXP_TEST_RESULT=str(target))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_results_file.py"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    table = read_result_table(target)
    assert table.rows[0][:4] == ["make test", 2, 0, 0] and table.rows[0][4] > 0 and table.rows[0][5] > 0
    assert table.command == "make measure-test"
