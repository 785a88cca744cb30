"""benchmarks/bench_step.py --quick: every variant fitted and the result file written, in one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from embedexp.core.results import read_result_table

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_step_quick_writes_one_row_per_variant(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCHMARKS.parent / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(BENCHMARKS / "bench_step.py"), "--quick", "--results", str(tmp_path)]
    subprocess.run(command, check=True, cwd=BENCHMARKS, env=env, timeout=900)
    table = read_result_table(tmp_path / "step_levers.json")
    assert table.columns == ["change", "s/step", "ratio vs default"]
    assert len(table.rows) == 5 and table.rows[0][2] == 1.0
    assert all(row[1] > 0 for row in table.rows) and "all levers together" in table.rows[-1][0]
    assert table.source["machine"]["cpu_model"] and "--quick" in table.command
