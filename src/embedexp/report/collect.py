"""Read the job folders of Hydra multiruns: each job's overrides, seed and clustering scores.

A job folder holds `metrics.json` (written by `embedexp.train` when the run finished) and Hydra's
`.hydra/overrides.yaml`. Jobs are grouped into configurations by their overrides minus the seed (and other keys that
do not change what is measured, see `DEFAULT_EXCLUDE`); a job without `metrics.json` did not finish and is reported
as missing rather than silently dropped.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from embedexp.errors import ConfigError

log = logging.getLogger(__name__)

# metrics.json prefixes → the stage they measure
STAGES = {"val/": "fine_tuned", "zero_shot/": "zero_shot"}
STAGE_ORDER = ("fine_tuned", "zero_shot")
# non-clustering values that share the `val/` prefix
NOT_SCORES = {"loss", "acc"}
# override keys that do not define a configuration: the seed (averaged over) and bookkeeping
DEFAULT_EXCLUDE = ("seed", "ckpt_path", "run_name", "trainer.devices", "hydra.*", "paths.*", "tags")


@dataclass
class RunRecord:
    """One job of a multirun."""

    job_dir: Path
    overrides: dict[str, str]
    seed: int | str | None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # stage → metric → value
    finished: bool = True


def _natural_key(path: Path) -> list:
    """Sort key that orders `2` before `10` in every path part."""
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)] for part in path.parts]


def find_job_dirs(root: Path) -> list[Path]:
    """Folders under `root` (or `root` itself) that are Hydra jobs (`.hydra/overrides.yaml`) or hold `metrics.json`."""
    candidates = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    candidates |= {p.parent for p in root.rglob("metrics.json")}
    # the sweep folder's own .hydra (Optuna writes one) holds no job: keep folders with a job number or metrics
    jobs = [d for d in candidates if (d / "metrics.json").is_file() or d != root]
    return sorted(jobs, key=_natural_key)


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """`["pooling=mean", "+x.y=1", "~z"]` → `{"pooling": "mean", "x.y": "1", "z": "<deleted>"}`."""
    parsed = {}
    for item in overrides:
        item = str(item).strip()
        if item.startswith("~"):
            parsed[item[1:].split("=", 1)[0]] = "<deleted>"
            continue
        key, _, value = item.lstrip("+").partition("=")
        parsed[key] = value
    return parsed


def _read_overrides(job_dir: Path, metrics: dict | None) -> dict[str, str]:
    """Hydra's saved overrides of the job; else the run name (`k=v,k=v`, Hydra's override_dirname) as a fallback."""
    saved = job_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        return parse_overrides(yaml.safe_load(saved.read_text()) or [])
    name = (metrics or {}).get("run_name") or ""
    log.warning("%s: no .hydra/overrides.yaml; grouping by its run name %r", job_dir, name)
    return parse_overrides(p for p in name.split(",") if "=" in p)


def scores_from_metrics(metrics: dict) -> dict[str, dict[str, float]]:
    """Clustering scores of a job by stage: `val/<task>` → fine_tuned, `zero_shot/<task>` → zero_shot."""
    scores: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        for prefix, stage in STAGES.items():
            name = key[len(prefix) :]
            if key.startswith(prefix) and name not in NOT_SCORES and isinstance(value, int | float):
                scores.setdefault(stage, {})[name] = float(value)
    return scores


def read_job(job_dir: Path, seed_key: str = "seed") -> RunRecord:
    """One job folder as a record (unfinished when it has no `metrics.json`)."""
    metrics_file = job_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    overrides = _read_overrides(job_dir, metrics)
    seed = (metrics or {}).get("provenance", {}).get("seed") if metrics else None
    if seed is None:
        seed = overrides.get(seed_key)
    if metrics is None:
        return RunRecord(job_dir, overrides, seed, finished=False)
    return RunRecord(job_dir, overrides, seed, scores_from_metrics(metrics))


def collect_runs(folders: Sequence[str | Path], seed_key: str = "seed") -> list[RunRecord]:
    """Every job under the given multirun folders (several folders are pooled: e.g. more seeds run later)."""
    records = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"report: {root} is not a folder")
        jobs = find_job_dirs(root)
        if not jobs:
            raise ConfigError(f"report: no multirun job folders (.hydra/overrides.yaml or metrics.json) under {root}")
        records += [read_job(job, seed_key) for job in jobs]
    return records


def config_keys(records: Sequence[RunRecord], exclude: Sequence[str] = DEFAULT_EXCLUDE) -> tuple[list[str], dict]:
    """Override keys that vary between jobs (they name the configurations), and the ones every job shares."""

    def kept(key: str) -> bool:
        return not any(fnmatch.fnmatchcase(key, pattern) for pattern in exclude)

    keys = sorted({k for r in records for k in r.overrides if kept(k)})
    varying, constant = [], {}
    for key in keys:
        values = {r.overrides.get(key) for r in records}
        if len(values) > 1:
            varying.append(key)
        else:
            constant[key] = values.pop()
    return varying, constant


def config_label(overrides: dict[str, str], keys: Sequence[str]) -> str:
    """`pooling=mean prompt=eol` from the varying keys (`all runs` when nothing varies)."""
    return " ".join(f"{k}={overrides.get(k, '-')}" for k in keys) or "all runs"


def runs_frame(records: Sequence[RunRecord], exclude: Sequence[str] = DEFAULT_EXCLUDE) -> tuple[pd.DataFrame, dict]:
    """Long table of every finished job's scores: config, its keys, stage, seed, metric, value, job folder.

    Returns the frame and the overrides shared by all jobs.
    """
    varying, constant = config_keys(records, exclude)
    rows = []
    for record in records:
        if not record.finished:
            continue
        label = config_label(record.overrides, varying)
        for stage, scores in record.scores.items():
            for metric, value in scores.items():
                row = {"config": label, **{k: record.overrides.get(k) for k in varying}}
                row.update(stage=stage, seed=record.seed, metric=metric, value=value, job=str(record.job_dir))
                rows.append(row)
    columns = ["config", *varying, "stage", "seed", "metric", "value", "job"]
    return pd.DataFrame(rows, columns=columns), constant
