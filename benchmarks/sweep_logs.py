"""Per-job stage times of a Hydra multirun, from the timestamps of its log lines (pure: text in, seconds out).

A job starts at Hydra's launch line (`[<time>][HYDRA] \t#k : <overrides>`) and ends at the next job's launch line or
at the command's end. The clustering callback logs `clustering evaluation (<stage>, <precision>): N tasks` when an
evaluation starts and `clustering (<stage>, <secs> s): ...` when it ends (stages `zero_shot`, `epoch`, `fit_end`).
A job's time splits into:

    start-up    job start -> zero-shot evaluation start (model, data, contamination check, trainer)
    zero-shot   the zero-shot evaluation
    training    zero-shot end -> last evaluation end, less the evaluations after training steps
    evaluation  the evaluations after training steps (epoch, fit_end)
    rest        last evaluation end -> job end (adapter, metrics, teardown)

Both trees of bench_sweep.py are parsed by the same code, so a stage means the same in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

STAMP = r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]"
LAUNCH = re.compile(STAMP + r"\[[^\]]+\](?:\[\w+\] -)?\s+#(\d+) : (.*?)\s*$")
EVAL_START = re.compile(STAMP + r".*? - clustering evaluation \((\w+), [^)]*\): \d+ tasks")
EVAL_END = re.compile(STAMP + r".*? - clustering \((\w+), [\d.]+ s\): ")
STAGES = ("startup", "zero_shot", "training", "evaluation", "rest")


@dataclass(frozen=True)
class Launch:
    """One job's launch line: its number, overrides and time."""

    number: int
    overrides: str
    time: datetime


@dataclass(frozen=True)
class Evaluation:
    """One clustering evaluation: its stage, start and end (None when it never ended)."""

    stage: str
    start: datetime
    end: datetime | None


def stamp(text: str) -> datetime:
    """A logging timestamp (`2026-12-07 04:06:25,336`) as a datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


def parse_launches(console: str) -> list[Launch]:
    """Hydra's launch lines of a multirun's console output, in order."""
    found = (LAUNCH.search(line) for line in console.splitlines())
    return [Launch(int(m.group(2)), m.group(3), stamp(m.group(1))) for m in found if m]


def parse_evaluations(text: str) -> list[Evaluation]:
    """The callback's evaluations in a log text: each start paired with the next end of the same stage."""
    evaluations: list[Evaluation] = []
    for line in text.splitlines():
        if start := EVAL_START.search(line):
            evaluations.append(Evaluation(start.group(2), stamp(start.group(1)), None))
        elif end := EVAL_END.search(line):
            stage = end.group(2)
            for i in range(len(evaluations) - 1, -1, -1):
                if evaluations[i].stage == stage and evaluations[i].end is None:
                    evaluations[i] = Evaluation(stage, evaluations[i].start, stamp(end.group(1)))
                    break
    return evaluations


def job_stages(start: datetime, end: datetime, evaluations: list[Evaluation]) -> dict[str, float | None]:
    """Seconds of each stage (STAGES) and `total` of a job from `start` to `end` (None: a stage it did not have)."""
    inside = [e for e in evaluations if e.end is not None and start <= e.start and e.end <= end]
    zero_shot = next((e for e in inside if e.stage == "zero_shot"), None)
    later = [e for e in inside if e.stage != "zero_shot" and (zero_shot is None or e.start >= zero_shot.end)]
    stages: dict[str, float | None] = dict.fromkeys(STAGES)
    trained_from = start
    if zero_shot is not None:
        stages["startup"] = (zero_shot.start - start).total_seconds()
        stages["zero_shot"] = (zero_shot.end - zero_shot.start).total_seconds()
        trained_from = zero_shot.end
    if later:
        evaluating = sum((e.end - e.start).total_seconds() for e in later)
        stages["evaluation"] = evaluating
        stages["training"] = (later[-1].end - trained_from).total_seconds() - evaluating
        stages["rest"] = (end - later[-1].end).total_seconds()
    else:
        stages["training"] = (end - trained_from).total_seconds()
    stages["total"] = (end - start).total_seconds()
    return {k: None if v is None else round(v, 3) for k, v in stages.items()}


def sweep_jobs(console: str, end: datetime, job_logs: dict[int, str] | None = None) -> list[dict]:
    """Each job of a multirun: number, overrides and stage seconds (job_stages).

    `console` is the command's output (launch lines, and every job's log lines); `end` when the command ended;
    `job_logs` each job's own log file (Hydra's `<job>/<task_name>.log`), read instead of the console where given.
    """
    launches = parse_launches(console)
    jobs = []
    for i, launch in enumerate(launches):
        job_end = launches[i + 1].time if i + 1 < len(launches) else end
        text = (job_logs or {}).get(launch.number) or console
        stages = job_stages(launch.time, job_end, parse_evaluations(text))
        jobs.append({"number": launch.number, "overrides": launch.overrides, **stages})
    return jobs
