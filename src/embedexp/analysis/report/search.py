"""The recipe search as one result file: a row per run of every step (losing and failed runs too), never averaged.

Each training job gives its step (the sweep folder), how its config differs (its overrides without the seed and
bookkeeping), seed, status, training data (`collect.training_data`), pairs per source and the contamination check's
record (`contamination.json`), minutes, every task's fine-tuned score, and the mean of the tasks no training source
is near (`transfer_tasks`: 20 Newsgroups, StackOverflow, biomedical titles) with the Debian tasks (`in_domain_tasks`)
and the zero-shot transfer mean beside it. Eval folders (a soup, all-MiniLM-L6-v2) join as rows of their own. Run
folders do not outlive a session: writing into an existing result file keeps its rows that this call does not measure
again, so the search grows across sessions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from embedexp.analysis.report.baselines import read_baseline, results_file
from embedexp.analysis.report.collect import DEFAULT_EXCLUDE, RunRecord, _kept, collect_runs
from embedexp.analysis.report.result_file import cost_cells, job_metrics, job_source
from embedexp.core.results import Cell, ResultTable, merge_sources, read_result_table, write_result_table
from embedexp.data.contamination_check import RESULT_FILE as CONTAMINATION_FILE
from embedexp.export.runs import run_choices

TRANSFER = ("TwentyNewsgroupsSubjectsClustering", "StackOverflowTitlesClustering", "BiomedicalTitlesClustering")
IN_DOMAIN = ("DebianShortDescSectionClustering", "DebianLongDescSectionClustering")
HEAD = ["step", "config", "seed", "status", "data", "pairs", "contamination", "minutes", "store share"]
MEANS = ["transfer mean", "zero-shot transfer mean", "Debian mean", "clustering_mean"]
BASE_GROUPS = ("pooling", "prompt")  # a base row names its choices: the recipe, every step's base, changed over time


def mean_of(scores: dict[str, float], tasks: Sequence[str]) -> float | None:
    """The mean of `tasks`' scores; None unless every one was scored."""
    values = [scores[t] for t in tasks if t in scores]
    return sum(values) / len(values) if values and len(values) == len(tasks) else None


def contamination_record(job: Path) -> tuple[str, str]:
    """(pairs per source, the check's verdict) from a job's contamination.json; ('', 'not checked') without it."""
    path = job / CONTAMINATION_FILE
    if not path.is_file():
        return "", "not checked"
    record = json.loads(path.read_text(encoding="utf-8"))
    sources = record.get("sources") or {}
    pairs = ", ".join(f"{name.rsplit('.', 1)[-1]} {n}" for name, n in sources.items()) if len(sources) > 1 else ""
    pairs = f"{record.get('pairs')}" + (f" ({pairs})" if pairs else "")
    verdict = f"{record.get('contaminated_texts', '?')} of {record.get('texts', '?')} texts repeat evaluation texts"
    dropped = sum(n for counts in (record.get("dropped_by_sources") or {}).values() for n in counts.values())
    if dropped:
        verdict += f"; the sources dropped {dropped} pairs repeating them"
    if record.get("unchecked"):
        verdict += f"; unchecked: {', '.join(map(str, record['unchecked']))}"
    return pairs, verdict


def task_columns(names, transfer: Sequence[str], in_domain: Sequence[str]) -> list[str]:
    """The scored task columns among `names`: the transfer tasks, the Debian tasks, then any other by name."""
    present = set(names) - {*HEAD, *MEANS, "clustering_mean"}
    return [t for t in (*transfer, *in_domain) if t in present] + sorted(present - {*transfer, *in_domain})


def config_difference(record: RunRecord, exclude: Sequence[str]) -> str:
    """The job's overrides that define its configuration (`experiment=... loss.temperature=0.02`)."""
    keys = [k for k in record.overrides if _kept(k, exclude) and k not in ("training_data", "experiment")]
    if keys:
        return " ".join(f"{k}={record.overrides[k]}" for k in keys)
    choices = run_choices(record.job_dir)
    named = " ".join(f"{group}={choices[group]}" for group in BASE_GROUPS if group in choices)
    return f"(the step's base: {named})" if named else "(the step's base)"


def run_row(record: RunRecord, tasks: list[str], transfer: Sequence[str], in_domain: Sequence[str], exclude) -> list:
    """One training job's row."""
    fine, zero = record.scores.get("fine_tuned", {}), record.scores.get("zero_shot", {})
    pairs, contamination = contamination_record(record.job_dir)
    metrics = job_metrics(record.job_dir)
    minutes = cost_cells([metrics])[0]
    stored = metrics.get("throughput/cached_share")  # the frozen layers' share read from the store: fewer minutes
    status = record.status if record.finished else f"{record.status}: {record.reason or ''}".rstrip(": ")
    step = record.overrides.get("experiment") or Path(record.sweep).name  # a step is an experiment=recipe_search_*
    head = [step, config_difference(record, exclude), record.seed, status]
    head += [record.overrides.get("training_data", ""), pairs, contamination, minutes]
    head += [round(stored, 3) if isinstance(stored, int | float) else None]
    means = [mean_of(fine, transfer), mean_of(zero, transfer), mean_of(fine, in_domain), fine.get("clustering_mean")]
    return head + [fine.get(task) for task in tasks] + means


def eval_row(folder: str | Path, tasks: list[str], transfer: Sequence[str], in_domain: Sequence[str]) -> list:
    """A soup's or a baseline model's eval folder as a row (no training: no data, pairs or minutes)."""
    model, _, scores = read_baseline(results_file(folder))
    head = ["soup" if model.startswith("soup(") else "baseline", model, "-", "finished", "", "", "", "", None]
    means = [mean_of(scores, transfer), None, mean_of(scores, in_domain), scores.get("clustering_mean")]
    return head + [scores.get(task) for task in tasks] + means


def search_table(
    sweeps: Sequence[str | Path],
    evals: Sequence[str | Path] = (),
    transfer: Sequence[str] = TRANSFER,
    in_domain: Sequence[str] = IN_DOMAIN,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
) -> tuple[list[str], list[list[Cell]], list[dict]]:
    """(columns, rows, sources): every job of `sweeps` and every eval folder of `evals`, best transfer mean first
    within each step (unscored runs last)."""
    records = collect_runs(sweeps) if sweeps else []
    tasks = task_columns({t for r in records for t in r.scores.get("fine_tuned", {})}, transfer, in_domain)
    order = {str(s): i for i, s in enumerate(sweeps)}
    rows = sorted(
        ([order.get(r.sweep, 0), run_row(r, tasks, transfer, in_domain, exclude)] for r in records),
        key=lambda item: (item[0], item[1][len(HEAD) + len(tasks)] is None, -(item[1][len(HEAD) + len(tasks)] or 0.0)),
    )
    rows = [row for _, row in rows]
    rows += [eval_row(folder, tasks, transfer, in_domain) for folder in evals]
    sources = [job_source(r.job_dir, m) for r in records if (m := job_metrics(r.job_dir))]
    return [*HEAD, *tasks, *MEANS], rows, sources


def row_key(row: dict[str, Cell]) -> tuple:
    """What a row measures: (step, config, seed)."""
    return row["step"], row["config"], row["seed"]


def with_previous(
    previous: ResultTable,
    columns: list[str],
    rows: list[list[Cell]],
    sources: list[dict],
    transfer: Sequence[str] = TRANSFER,
    in_domain: Sequence[str] = IN_DOMAIN,
) -> tuple[list[str], list[list[Cell]], list[dict]]:
    """`previous`'s rows that `rows` do not measure again, joined to them (columns matched by name, steps in the order
    first seen, best transfer mean first within a step, soups and baselines last)."""
    fresh = [dict(zip(columns, row)) for row in rows]
    measured = {row_key(row) for row in fresh}
    kept = [r for r in (dict(zip(previous.columns, row)) for row in previous.rows) if row_key(r) not in measured]
    merged = [*HEAD, *task_columns([*previous.columns, *columns], transfer, in_domain), *MEANS]
    everything = kept + fresh
    order = {step: i for i, step in enumerate(dict.fromkeys(r["step"] for r in everything))}
    last = len(order)

    def rank(row: dict[str, Cell]) -> tuple:
        score = row.get("transfer mean")
        return order[row["step"]] if row["step"] not in ("soup", "baseline") else last, score is None, -(score or 0.0)

    table = [[row.get(c) for c in merged] for row in sorted(everything, key=rank)]
    return merged, table, [previous.source, *sources] if kept else sources


def write_search_result(
    result_file: str | Path,
    sweeps: Sequence[str | Path],
    evals: Sequence[str | Path],
    command: str,
    title: str,
    transfer: Sequence[str] = TRANSFER,
    in_domain: Sequence[str] = IN_DOMAIN,
    keep_previous: bool = True,
) -> Path:
    """Write the search table as a result file (its source: the runs' own commits, dates and machines); with
    `keep_previous`, the rows of an existing `result_file` that these runs do not measure again stay."""
    columns, rows, sources = search_table(sweeps, evals, transfer, in_domain)
    if keep_previous and Path(result_file).is_file():
        columns, rows, sources = with_previous(
            read_result_table(result_file), columns, rows, sources, transfer, in_domain
        )
    notes = (
        f"One row per run, not averaged. transfer mean: {', '.join(transfer)} (no training source is near them); "
        f"Debian mean: {', '.join(in_domain)}. Minutes: the run's wall time on the machine of the source line; store "
        "share: the part of the training batches whose frozen layers were read from the prefix store (runs sharing "
        "texts with an earlier one), which shortens the minutes."
    )
    return write_result_table(result_file, title, columns, rows, command, notes=notes, source=merge_sources(sources))
