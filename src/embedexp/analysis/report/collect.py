"""Read the job folders of Hydra multiruns: each job's overrides, seed and clustering scores.

A job folder holds `metrics.json` (written by `embedexp.cli.train` when the run finished), `run_status.json` (running,
finished, failed or interrupted, with the reason and last step) and Hydra's `.hydra/overrides.yaml`. A job is
finished only when its metrics exist and its status (if recorded) is `finished`. Where `metrics.json` is missing, a
W&B offline run in the job's `wandb/` folder stands in if it exited with code 0 and recorded `run/status: finished`
(read with W&B's own reader, `embedexp.analysis.report.wandb_runs`). Every other job is reported as unfinished, with its
reason and last step, never silently dropped. Jobs are grouped into configurations by their overrides minus the seed
(and other keys that do not change what is measured, see `DEFAULT_EXCLUDE`), by their training data (`training_data`,
from `.hydra/config.yaml`: a mixture's sources and weights) and by the task set they scored. Several folders pool
their jobs (e.g. more seeds run later) only when they are sweeps of one shape, the same override keys; sweeps of
different shapes keep apart, each configuration labelled with its sweep folder.
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

from embedexp.analysis.report import wandb_runs
from embedexp.core.errors import ConfigError
from embedexp.core.run_status import FINISHED, read_status

log = logging.getLogger(__name__)

# metrics.json prefixes → the stage they measure
STAGES = {"val/": "fine_tuned", "zero_shot/": "zero_shot"}
STAGE_ORDER = ("fine_tuned", "zero_shot")
# non-clustering values that share the `val/` prefix
NOT_SCORES = {"loss", "acc"}
# override keys that do not define a configuration: the seed (averaged over) and bookkeeping
UNRECORDED = "unrecorded"  # runs made before task sets were recorded
DEFAULT_EXCLUDE = (
    "seed", "ckpt_path", "run_name", "trainer.devices", "hydra.*", "paths.*", "tags", "logger", "logger.*",
)  # fmt: skip


@dataclass
class RunRecord:
    """One job of a multirun."""

    job_dir: Path
    overrides: dict[str, str]
    seed: int | str | None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # stage → metric → value
    status: str = FINISHED  # or running (killed without cleanup), failed, interrupted, unknown
    reason: str | None = None
    last_step: int | None = None
    source: str = "metrics.json"  # or the W&B run folder the scores were read from
    task_set: str = UNRECORDED  # id of the task set scored (`score_cache.task_set_record`)
    tasks: list[dict] = field(default_factory=list)
    sweep: str = ""  # the multirun folder given to the report that holds the job

    @property
    def finished(self) -> bool:
        """Only a run that recorded `finished` (or, before run statuses existed, wrote metrics.json) counts."""
        return self.status == FINISHED


def _natural_key(path: Path) -> list:
    """Sort key that orders `2` before `10` in every path part."""
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)] for part in path.parts]


def find_job_dirs(root: Path, read_wandb: bool = True) -> list[Path]:
    """Folders under `root` (or `root` itself) that are Hydra jobs (`.hydra/overrides.yaml`), hold `metrics.json`,
    or (with `read_wandb`) hold W&B runs in `wandb/`."""
    candidates = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    candidates |= {p.parent for p in root.rglob("metrics.json")}
    if read_wandb:
        candidates |= {p.parents[1] for p in wandb_runs.find_runs(root) if p.parent.name == "wandb"}
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
    """Hydra's saved overrides of the job; else those logged to W&B; else the run name (`k=v,k=v`, Hydra's
    override_dirname) as a fallback."""
    saved = job_dir / ".hydra" / "overrides.yaml"
    if saved.is_file():
        return parse_overrides(yaml.safe_load(saved.read_text()) or [])
    if isinstance((metrics or {}).get("overrides"), list):
        return parse_overrides(metrics["overrides"])
    name = (metrics or {}).get("run_name") or ""
    log.warning("%s: no .hydra/overrides.yaml; grouping by its run name %r", job_dir, name)
    return parse_overrides(p for p in name.split(",") if "=" in p)


def training_data(job_dir: Path) -> str | None:
    """The job's training data from its saved config: a mixture's sources with their weights (or pair counts) and
    total, or the single source's kind and size; None without `.hydra/config.yaml`."""
    saved = job_dir / ".hydra" / "config.yaml"
    data = (yaml.safe_load(saved.read_text()) or {}).get("data") if saved.is_file() else None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("sources"), dict):
        shares = [
            f"{name} {node.get('pairs') if node.get('pairs') is not None else node.get('weight', 1.0)}"
            for name, node in data["sources"].items()
            if node
        ]
        return f"mixture {data.get('total_pairs')} ({data.get('batching')}): " + ", ".join(shares)
    source = data.get("source") or {}
    kind = str(source.get("_target_", "?")).rsplit(".", 1)[-1]
    detail = source.get("pairing") or source.get("path") or source.get("folder") or source.get("dataset") or ""
    return f"{kind} {detail} {source.get('max_pairs') or source.get('max_texts') or 'all'}".replace("  ", " ")


def scores_from_metrics(metrics: dict) -> dict[str, dict[str, float]]:
    """Clustering scores of a job by stage: `val/<task>` → fine_tuned, `zero_shot/<task>` → zero_shot."""
    scores: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        for prefix, stage in STAGES.items():
            name = key[len(prefix) :]
            if key.startswith(prefix) and name not in NOT_SCORES and isinstance(value, int | float):
                scores.setdefault(stage, {})[name] = float(value)
    return scores


def wandb_run(job_dir: Path) -> wandb_runs.WandbRun | None:
    """The job's newest readable W&B run, if any."""
    for path in reversed(wandb_runs.find_runs(job_dir / "wandb") if (job_dir / "wandb").is_dir() else []):
        try:
            return wandb_runs.read_run(path)
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable W&B run (%s)", path, err)
    return None


def _unfinished_reason(status: dict | None, metrics: dict | None) -> tuple[str, str]:
    """(status, reason) of a job that did not finish, from its run_status.json."""
    if status is None:
        return "unknown", "no metrics.json and no run_status.json"
    if status.get("status") == "running":
        detail = "metrics.json written, final status not" if metrics else "no final status"
        return "running", f"{detail}: killed without cleanup (SIGKILL, out of memory) or still running"
    return str(status.get("status")), str(status.get("reason") or "")


def read_job(job_dir: Path, seed_key: str = "seed", read_wandb: bool = True) -> RunRecord:
    """One job folder as a record: `metrics.json` with a finished status, else a finished W&B run, else unfinished."""
    metrics_file = job_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    status = read_status(job_dir)
    finished = metrics is not None and (status is None or status.get("status") == FINISHED)
    source, last_step = "metrics.json", (status or {}).get("step")
    state, reason = (FINISHED, None) if finished else _unfinished_reason(status, metrics)
    if metrics is None and read_wandb:
        run = wandb_run(job_dir)
        if run is not None:
            metrics = {**run.config, **run.summary, "provenance": {"seed": run.config.get(seed_key)}}
            source, finished = str(run.path), run.finished
            last_step = run.summary.get("run/last_step", last_step)
            if not finished:
                state = run.summary.get("run/status") or f"W&B state {run.state}"
                reason = run.summary.get("run/reason") or f"W&B exit code {run.exit_code}"
            else:
                state, reason = FINISHED, None
    overrides = _read_overrides(job_dir, metrics)
    if (data := training_data(job_dir)) is not None:  # runs on different data never pool into one configuration
        overrides["training_data"] = data
    seed = (metrics or {}).get("provenance", {}).get("seed") if metrics else None
    if seed is None:
        seed = overrides.get(seed_key)
    task_set = (metrics or {}).get("task_set") or {}
    record = RunRecord(job_dir, overrides, seed, status=state, reason=reason, last_step=last_step, source=source)
    record.task_set, record.tasks = task_set.get("id", UNRECORDED), task_set.get("tasks", [])
    if finished:
        record.scores = scores_from_metrics(metrics)
    return record


def collect_runs(folders: Sequence[str | Path], seed_key: str = "seed", read_wandb: bool = True) -> list[RunRecord]:
    """Every job under the given multirun folders (several folders are pooled: e.g. more seeds run later)."""
    records = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"report: {root} is not a folder")
        jobs = find_job_dirs(root, read_wandb)
        if not jobs:
            raise ConfigError(
                f"report: no multirun job folders (.hydra/overrides.yaml, metrics.json or wandb runs) under {root}"
            )
        for job in jobs:
            records.append(read_job(job, seed_key, read_wandb))
            records[-1].sweep = str(root)
    return records


def _kept(key: str, exclude: Sequence[str]) -> bool:
    """Whether an override key names a configuration (not the seed or bookkeeping)."""
    return not any(fnmatch.fnmatchcase(key, pattern) for pattern in exclude)


def sweep_shapes(
    records: Sequence[RunRecord], exclude: Sequence[str] = DEFAULT_EXCLUDE, seed_key: str = "seed"
) -> dict[str, list[str]]:
    """Each sweep folder's shape: the override keys its jobs set (the seed among them, bookkeeping left out)."""
    shapes: dict[str, set[str]] = {}
    for record in records:
        keys = {k for k in record.overrides if _kept(k, exclude) or k == seed_key}
        shapes.setdefault(record.sweep, set()).update(keys)
    return {sweep: sorted(keys) for sweep, keys in shapes.items()}


def config_keys(records: Sequence[RunRecord], exclude: Sequence[str] = DEFAULT_EXCLUDE) -> tuple[list[str], dict]:
    """Override keys that vary between jobs (they name the configurations), and the ones every job shares."""
    keys = sorted({k for r in records for k in r.overrides if _kept(k, exclude)})
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


def runs_frame(
    records: Sequence[RunRecord], exclude: Sequence[str] = DEFAULT_EXCLUDE, seed_key: str = "seed"
) -> tuple[pd.DataFrame, dict]:
    """Long table of every finished job's scores: config, its keys, stage, seed, metric, value, task set, job folder.

    When the jobs scored different task sets, each configuration's label names its task set; when they come from
    sweeps of different shapes, its sweep folder. Returns the frame and the overrides shared by all jobs.
    """
    varying, constant = config_keys(records, exclude)
    several_sets = len(task_sets(records)) > 1
    several_shapes = len({tuple(keys) for keys in sweep_shapes(records, exclude, seed_key).values()}) > 1
    rows = []
    for record in records:
        if not record.finished:
            continue
        label = config_label(record.overrides, varying)
        if several_sets:  # never pool runs that scored different tasks into one configuration
            label += f" [tasks {record.task_set}]"
        if several_shapes:  # nor runs of sweeps that set different keys (e.g. one with seeds, one without)
            label += f" [sweep {Path(record.sweep).name}]"
        for stage, scores in record.scores.items():
            for metric, value in scores.items():
                row = {"config": label, **{k: record.overrides.get(k) for k in varying}}
                row.update(stage=stage, seed=record.seed, metric=metric, value=value, task_set=record.task_set)
                row["job"] = str(record.job_dir)
                rows.append(row)
    columns = ["config", *varying, "stage", "seed", "metric", "value", "task_set", "job"]
    return pd.DataFrame(rows, columns=columns), constant


def task_sets(records: Sequence[RunRecord]) -> dict[str, list[dict]]:
    """The task sets the finished jobs scored: id → its tasks (name, n_texts, hash)."""
    sets: dict[str, list[dict]] = {}
    for record in records:
        if record.finished:
            sets.setdefault(record.task_set, record.tasks)
    return sets
