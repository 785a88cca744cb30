"""The tables of bench_sweep.py from its measurements of two trees (pure: dicts in, rows out).

A measurement is a dict: `label` (e.g. `baseline 21a67c3`), `wall_s` (the whole command), and `jobs`, each with
`number`, `overrides`, the stage seconds of sweep_logs.job_stages and `scores` (sweep: `val` and `zero_shot`, each
task -> score; grid: task -> score).
"""

from __future__ import annotations

from sweep_logs import STAGES

MEAN = "clustering_mean"
STAGE_NAMES = {"startup": "start-up", "zero_shot": "zero-shot", "training": "training", "evaluation": "evaluation"}
SWEEP_COLUMNS = ["tree", "job", "overrides", *(f"{STAGE_NAMES.get(s, s)} min" for s in STAGES), "total min"]
GRID_COLUMNS = ["cell", "baseline min", "this tree min", "ratio", f"baseline {MEAN}", f"this tree {MEAN}", "difference"]
RATIO = "this tree / baseline"


def minutes(seconds: float | None) -> float | None:
    """Seconds as minutes, 3 decimals (None stays None)."""
    return None if seconds is None else round(seconds / 60, 3)


def ratio(current: float | None, baseline: float | None, floor_s: float = 1.0) -> float | None:
    """current / baseline, 3 decimals; None where either is missing or the baseline is under `floor_s` seconds."""
    if current is None or baseline is None or baseline < floor_s:
        return None
    return round(current / baseline, 3)


def short_overrides(jobs: list[dict]) -> list[str]:
    """Each job's overrides without those every job shares (`experiment=recipe_cpu seed=2` -> `seed=2`)."""
    tokens = [job["overrides"].split() for job in jobs]
    shared = set.intersection(*(set(t) for t in tokens)) if tokens else set()
    return [" ".join(t for t in job if t not in shared) or " ".join(job) for job in tokens]


def stage_sums(jobs: list[dict]) -> dict[str, float | None]:
    """Each stage summed over the jobs (None where no job had it)."""
    sums = {}
    for stage in (*STAGES, "total"):
        values = [job[stage] for job in jobs if job.get(stage) is not None]
        sums[stage] = sum(values) if values else None
    return sums


def sweep_rows(baseline: dict, current: dict) -> list[list]:
    """Stage minutes per tree and job, each tree's whole command, then current/baseline per job and overall."""
    rows = []
    for tree in (baseline, current):
        names = short_overrides(tree["jobs"])
        for job, name in zip(tree["jobs"], names):
            rows.append([tree["label"], f"#{job['number']}", name, *(minutes(job[s]) for s in STAGES)])
            rows[-1].append(minutes(job["total"]))
        sums = stage_sums(tree["jobs"])
        rows.append([tree["label"], "all", "whole command (wall)", *(minutes(sums[s]) for s in STAGES)])
        rows[-1].append(minutes(tree["wall_s"]))
    names = short_overrides(current["jobs"])
    for base, cur, name in zip(baseline["jobs"], current["jobs"], names):
        rows.append([RATIO, f"#{cur['number']}", name, *(ratio(cur[s], base[s]) for s in (*STAGES, "total"))])
    base_sums, cur_sums = stage_sums(baseline["jobs"]), stage_sums(current["jobs"])
    rows.append([RATIO, "all", "whole command (wall)", *(ratio(cur_sums[s], base_sums[s]) for s in STAGES)])
    rows[-1].append(ratio(current["wall_s"], baseline["wall_s"]))
    return rows


def task_columns(trees: list[dict]) -> list[str]:
    """The tasks scored in any job of any tree, sorted, the mean last."""
    names = {k for tree in trees for job in tree["jobs"] for stage in job["scores"].values() for k in stage}
    return sorted(names - {MEAN}) + [MEAN]


def interval_cell(values: list[float]) -> str:
    """`mean ± 95 % half-width` over seeds (`mean (n=1)` for one value)."""
    from embedexp.analysis.report.stats import confidence_interval

    mean, half, _, n = confidence_interval(values)
    return f"{mean:.4f} (n=1)" if n == 1 else f"{mean:.4f} ± {half:.4f}"


def quality_rows(baseline: dict, current: dict) -> tuple[list[str], list[list]]:
    """(columns, rows): every job's fine-tuned and zero-shot scores per task, then mean ± CI over seeds per tree."""
    tasks = task_columns([baseline, current])
    columns = ["tree", "job", "stage", *tasks]
    rows = []
    for tree in (baseline, current):
        for job, name in zip(tree["jobs"], short_overrides(tree["jobs"])):
            for stage, key in (("fine_tuned", "val"), ("zero_shot", "zero_shot")):
                scores = job["scores"].get(key, {})
                rows.append([tree["label"], name, stage, *(scores.get(t) for t in tasks)])
    for tree in (baseline, current):
        for stage, key in (("fine_tuned", "val"), ("zero_shot", "zero_shot")):
            cells = []
            for task in tasks:
                values = [job["scores"][key][task] for job in tree["jobs"] if task in job["scores"].get(key, {})]
                cells.append(interval_cell(values) if values else None)
            rows.append([tree["label"], f"mean ± 95% CI (n={len(tree['jobs'])})", stage, *cells])
    return columns, rows


def grid_rows(baseline: dict, current: dict) -> list[list]:
    """Per cell: minutes of both trees, their ratio and both clustering means; then the sum of jobs and the wall."""
    rows = []
    names = short_overrides(current["jobs"])
    for base, cur, name in zip(baseline["jobs"], current["jobs"], names):
        base_score, cur_score = base["scores"].get(MEAN), cur["scores"].get(MEAN)
        difference = None if base_score is None or cur_score is None else round(cur_score - base_score, 4)
        row = [name, minutes(base["total"]), minutes(cur["total"]), ratio(cur["total"], base["total"])]
        rows.append([*row, base_score, cur_score, difference])
    base_sum, cur_sum = stage_sums(baseline["jobs"])["total"], stage_sums(current["jobs"])["total"]
    rows.append(["all jobs (launch to launch)", minutes(base_sum), minutes(cur_sum), ratio(cur_sum, base_sum)])
    rows.append(["whole command (wall)", minutes(baseline["wall_s"]), minutes(current["wall_s"])])
    rows[-1].append(ratio(current["wall_s"], baseline["wall_s"]))
    for row in rows[-2:]:
        row += [None, None, None]
    return rows


def max_difference(rows: list[list]) -> float | None:
    """The largest |difference| (last column) over grid_rows' cells."""
    values = [abs(row[-1]) for row in rows if row[-1] is not None]
    return max(values) if values else None
