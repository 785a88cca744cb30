"""The report's and the fidelity study's tables as result files (`result_file=results/<name>.json`), which the docs
render.

Rows are the report's configurations and stages, cells its `mean ± CI` scores, plus what each configuration cost per
run (`time/total_s` and `memory/peak_rss_mb` of its jobs' `metrics.json`). The source names the runs' own commits,
dates and machines (from their `metrics.json` provenance), not the machine that wrote the report.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pandas as pd

from embedexp.analysis.report.stats import metric_order
from embedexp.analysis.report.tables import format_score
from embedexp.core.results import merge_sources, write_result_table

COST_COLUMNS = ("minutes per run", "peak RSS (GB)")


def job_metrics(job: Path) -> dict:
    """A job's metrics.json ({} when it has none, e.g. a baseline's eval folder)."""
    path = job / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def job_source(job: Path, metrics: dict) -> dict:
    """The commit, date and machine that produced a job's metrics."""
    provenance = metrics.get("provenance") or {}
    modified = datetime.date.fromtimestamp((job / "metrics.json").stat().st_mtime).isoformat()
    return {"git_commit": provenance.get("git_commit"), "date": modified, "machine": provenance.get("machine") or {}}


def cost_cells(metrics: list[dict]) -> list[str]:
    """Minutes per run (a range over the jobs) and the largest peak RSS in GB; empty without measurements."""
    minutes = sorted(m["time/total_s"] / 60 for m in metrics if isinstance(m.get("time/total_s"), int | float))
    memory = [m["memory/peak_rss_mb"] / 1024 for m in metrics if isinstance(m.get("memory/peak_rss_mb"), int | float)]
    spread = "" if not minutes else f"{minutes[0]:.1f}" + (f"-{minutes[-1]:.1f}" if minutes[-1] != minutes[0] else "")
    return [spread, f"{max(memory):.1f}" if memory else ""]


def report_result_rows(report: pd.DataFrame, runs: pd.DataFrame) -> tuple[list[str], list[list], list[dict]]:
    """(columns, rows, sources) of the result file from the report's `report.csv` and `runs.csv` frames."""
    metrics = metric_order([c[: -len(" mean")] for c in report.columns if c.endswith(" mean")])
    loaded: dict[str, dict] = {}
    rows, sources = [], []
    for _, row in report.iterrows():
        jobs = sorted(set(runs.loc[(runs["config"] == row["config"]) & (runs["stage"] == row["stage"]), "job"]))
        for job in jobs:
            if job not in loaded and Path(job).is_dir():
                loaded[job] = job_metrics(Path(job))
                if loaded[job]:
                    sources.append(job_source(Path(job), loaded[job]))
        scores = [
            "" if pd.isna(row.get(f"{m} mean")) else format_score(row[f"{m} mean"], _nan(row, f"{m} ci95"), row["n"])
            for m in metrics
        ]
        costs = cost_cells([loaded.get(job, {}) for job in jobs])
        rows.append([row["config"], row["stage"], int(row["n"]), *scores, *costs])
    return ["config", "stage", "n", *metrics, *COST_COLUMNS], rows, sources


def _nan(row: pd.Series, key: str) -> float:
    """A float cell, NaN when missing."""
    value = row.get(key)
    return math.nan if value is None or pd.isna(value) else float(value)


def write_report_result(
    paths: dict[str, Path], result_file: str | Path, command: str, title: str, confidence: float = 0.95
) -> Path:
    """Write the report written at `paths` (`csv`, `runs`) as a result file."""
    report = pd.read_csv(paths["csv"])
    runs = pd.read_csv(paths["runs"])
    columns, rows, sources = report_result_rows(report, runs)
    notes = f"Cells: mean ± {confidence:.0%} Student-t half-width over seeds; (n=1): one run, no interval."
    return write_result_table(result_file, title, columns, rows, command, notes=notes, source=merge_sources(sources))


def write_fidelity_result(
    paths: dict[str, Path], result_file: str | Path, command: str, title: str, precision: str = ""
) -> Path:
    """Write the fidelity table written at `paths["csv"]` as a result file (scored on this machine, in `precision`)."""
    table = pd.read_csv(paths["csv"])
    rows = json.loads(table.to_json(orient="values"))  # plain numbers, NaN as null
    notes = "spearman: rho of each size's scores with the reference size's across runs; ci: bootstrap interval"
    scored = {"eval": precision} if precision else None
    return write_result_table(result_file, title, list(table.columns), rows, command, precision=scored, notes=notes)
