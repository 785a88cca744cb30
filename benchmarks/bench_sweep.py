"""Sweeps as a user runs them, timed against a baseline commit in the same run (issue #27, item 3).

Two parts, each run by both trees back to back (the baseline commit first, in a git worktree under the temp folder;
then this checkout), every command a fresh `python -m embedexp` process with that tree's `src` on PYTHONPATH:

    sweep  train -m experiment=recipe_cpu seed=1,2,3 (zero-shot and epoch evaluations included): each job's
           start-up, zero-shot, training, evaluation and rest (sweep_logs.py), and its scores from metrics.json
    grid   eval -m pooling=mean,last,weighted_mean,max,concat prompt=none,eol,cluster tasks=offline_1000 (zero-shot):
           the whole command's wall time, each cell's time (launch to launch) and clustering_mean

Each tree and part starts cold: empty $EMBEDEXP_SCORE_CACHE_DIR, $EMBEDEXP_PREFIX_STORE_DIR and
$TORCHINDUCTOR_CACHE_DIR of its own. Both share $EMBEDEXP_CACHE_DIR (dequantized model, tokenizer, Debian corpus,
contamination index: installation caches), primed before timing by a one-step `train` of the baseline tree.
Results: benchmarks/results/sweep.json, sweep_quality.json and grid.json (docs/performance.md renders them); raw
measurements and console outputs under --out.

    python benchmarks/bench_sweep.py                                    # the issue's measurement (hours on 2 cores)
    python benchmarks/bench_sweep.py --seeds 1,2 --overrides experiment=smoke --poolings mean,last \
        --prompts none,eol --grid-overrides model=tiny tasks=tiny --results /tmp/sweep-results   # a minute-scale check
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

from common import CACHE_DIR, RECIPE_WORKLOAD, SHARED, command_line
from sweep_logs import sweep_jobs
from sweep_tables import GRID_COLUMNS, SWEEP_COLUMNS, grid_rows, max_difference, quality_rows, sweep_rows

from embedexp.core.results import write_result_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROBE_ENV = "EMBEDEXP_PRECISION_PROBE"  # never inherited: each run probes `precision: auto` as a user's run does
FRESH = {"EMBEDEXP_SCORE_CACHE_DIR": "score_cache", "EMBEDEXP_PREFIX_STORE_DIR": "prefix_store"}
FRESH["TORCHINDUCTOR_CACHE_DIR"] = "inductor"  # model.compile's kernels: compiled anew by each tree's first run


def git(cwd: Path, *args: str) -> str:
    """A git command's output, stripped."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit_of(root: Path) -> str:
    """The checkout's commit, `-dirty` when it has uncommitted changes to tracked files."""
    dirty = git(root, "status", "--porcelain", "--untracked-files=no")
    return git(root, "rev-parse", "HEAD") + ("-dirty" if dirty else "")


def baseline_root(ref: str) -> Path:
    """The baseline ref checked out in a detached worktree under the temp folder (made once, then reused)."""
    folder = Path(tempfile.gettempdir()) / f"embedexp-baseline-{ref}"
    if not (folder / "src").is_dir():
        git(ROOT, "worktree", "add", "--detach", str(folder), ref)
    if git(folder, "rev-parse", "HEAD") != git(ROOT, "rev-parse", f"{ref}^{{commit}}"):
        raise SystemExit(f"{folder} is not at {ref}: remove it (git worktree remove {folder}) and run again")
    return folder


def child_env(root: Path, scratch: Path) -> dict[str, str]:
    """The environment of a tree's command: its src first, the shared installation caches, fresh empty caches."""
    env = dict(os.environ, PYTHONPATH=str(root / "src"), EMBEDEXP_CACHE_DIR=CACHE_DIR, EMBEDEXP_SHARED_DATA=str(SHARED))
    env.pop(PROBE_ENV, None)
    for key, name in FRESH.items():
        folder = scratch / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        env[key] = str(folder)
    return env


def run_logged(args: list[str], env: dict[str, str], cwd: Path, console: Path) -> tuple[datetime, datetime]:
    """Run `python -m embedexp <args>`, its output into `console` and onto stdout; (start, end) local times."""
    cwd.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "embedexp", *args]
    print(f"\n$ {shlex.join(command)}  (cwd {cwd})", flush=True)
    start = datetime.now()
    with open(console, "wb") as sink, subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                                       stderr=subprocess.STDOUT) as process:  # fmt: skip
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            sink.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    end = datetime.now()
    if process.returncode:
        raise SystemExit(f"exit status {process.returncode}: {shlex.join(command)} (output: {console})")
    return start, end


def job_folders(sweep_dir: Path) -> dict[int, Path]:
    """Job number -> its folder in a multirun folder."""
    return {int(p.name): p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()}


def sweep_scores(folder: Path) -> dict:
    """A training job's `val` and `zero_shot` scores (task -> score) and machine, from its metrics.json."""
    metrics = json.loads((folder / "metrics.json").read_text())
    scores = {stage: {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(stage + "/")}
              for stage in ("val", "zero_shot")}  # fmt: skip
    return {"scores": scores, "machine": (metrics.get("provenance") or {}).get("machine", {})}


def grid_scores(folder: Path) -> dict:
    """An evaluation job's scores (task -> score, clustering_mean included) and machine."""
    with open(folder / "eval_results.csv", newline="") as handle:
        row = list(csv.DictReader(handle))[-1]
    scores = {}
    for key, value in row.items():
        try:
            scores[key] = float(value)
        except (TypeError, ValueError):
            continue  # model, pooling, prompt, task set, label
    provenance = folder / "provenance.json"
    machine = json.loads(provenance.read_text()).get("machine", {}) if provenance.is_file() else {}
    return {"scores": scores, "machine": machine}


def measure(part: str, tree: tuple[str, str, Path], args: argparse.Namespace) -> dict:
    """One tree's command of one part, cold: its jobs' stage seconds and scores, wall time, load average."""
    name, label, root = tree
    scratch = args.out / name / part
    sweep_dir = scratch / "multirun"
    shutil.rmtree(sweep_dir, ignore_errors=True)
    if part == "sweep":
        command = ["train", "-m", *args.overrides, f"seed={args.seeds}"]
    else:
        command = ["eval", "-m", f"pooling={args.poolings}", f"prompt={args.prompts}", *args.grid_overrides]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    load = os.getloadavg()
    start, end = run_logged(command, child_env(root, scratch), scratch, scratch / "console.txt")
    folders = job_folders(sweep_dir)
    logs = {n: next(iter(sorted(f.glob("*.log"))), None) for n, f in folders.items()}
    jobs = sweep_jobs((scratch / "console.txt").read_text(errors="replace"), end,
                      {n: p.read_text(errors="replace") for n, p in logs.items() if p})  # fmt: skip
    for job in jobs:
        job.update((sweep_scores if part == "sweep" else grid_scores)(folders[job["number"]]))
    return {"label": label, "command": command, "start": start.isoformat(), "wall_s": (end - start).total_seconds(),
            "load_before": [round(x, 2) for x in load], "jobs": jobs}  # fmt: skip


def prime(root: Path, args: argparse.Namespace) -> None:
    """Fill the shared installation caches (model, tokenizer, corpus, contamination index) with one-step runs."""
    for part, overrides in (("sweep", [*args.overrides, f"seed={args.seeds.split(',')[0]}"]),
                            ("grid", args.grid_overrides)):  # fmt: skip
        if part not in args.parts:
            continue
        scratch = args.out / "prime" / part
        command = ["train", *overrides, "trainer.max_steps=1", "callbacks=none", "model.compile=false",
                   "logger=csv", f"hydra.run.dir={scratch / 'run'}"]  # fmt: skip
        run_logged(command, child_env(root, scratch), scratch, scratch / "console.txt")


def source_of(measurements: list[dict], commits: str) -> dict:
    """The result files' source: both commits, today, and the runs' own machine record (CPU class, precision)."""
    machine = next((job["machine"] for m in measurements for job in m["jobs"] if job.get("machine")), {})
    precision = {
        k: v for m in measurements for job in m["jobs"] for k, v in job["machine"].get("precision", {}).items()
    }
    return {
        "git_commit": commits,
        "date": date.today().isoformat(),
        "machine": {
            **{k: machine.get(k) for k in ("cpu_model", "cpu_capability", "threads")},
            "precision": precision,
            "bf16_speedup": round((machine.get("precision_probe") or {}).get("bf16_speedup") or 0, 2) or None,
        },
    }


def precision_note(baseline: dict, current: dict) -> str:
    """A warning when the trees resolved `auto` differently (their times are then not comparable)."""
    seen = [{k: v for job in tree["jobs"] for k, v in job["machine"].get("precision", {}).items()}
            for tree in (baseline, current)]  # fmt: skip
    return "" if seen[0] == seen[1] else f" PRECISIONS DIFFER: baseline {seen[0]}, this tree {seen[1]}."


def shown(command: list[str]) -> str:
    """A tree's embedexp command as the tables name it (without its sweep folder)."""
    return " ".join(c for c in command if not c.startswith("hydra.sweep.dir="))


def without_local_paths(text: str) -> str:
    """`text` with the machine's folders of --out and --baseline-from named by their role (results name no path)."""
    text = re.sub(r"(--out )\S+", r"\1<out>", text)
    return re.sub(r"(--baseline-from )?/\S*measurements\.json", r"\1<baseline run>/measurements.json", text)


def write_results(record: dict, folder: Path) -> None:
    """The result files of the parts in `record` (measurements.json: command, baseline, commits, parts)."""
    parts, command, commits = record["parts"], without_local_paths(record["command"]), record["commits"]
    order = (
        f"this tree measured later, the baseline's runs reused from {without_local_paths(record['baseline_from'])}"
        if record.get("baseline_from")
        else "then this tree, back to back"
    )
    common = (
        f"Baseline {record['baseline']} in a git worktree, {order}; each tree and part with "
        "empty score, prefix-store and inductor caches, both with the same primed model and corpus caches"
    )
    if "sweep" in parts:
        base, cur = parts["sweep"]
        source = source_of([base, cur], commits)
        write_result_table(
            folder / "sweep.json",
            f"`{shown(cur['command'])}`: minutes per job and stage, and the ratio",
            SWEEP_COLUMNS,
            sweep_rows(base, cur),
            command,
            source=source,
            notes=f"{common}; rows `all`: each stage summed over the jobs, total the command's wall time (its start "
            f"before the first launch line included); load average before: baseline {base['load_before']}, this tree "
            f"{cur['load_before']}." + precision_note(base, cur),
        )
        columns, rows = quality_rows(base, cur)
        write_result_table(
            folder / "sweep_quality.json",
            f"`{shown(cur['command'])}`: scores per seed, both trees",
            columns,
            rows,
            command,
            source=source,
        )
    if "grid" in parts:
        base, cur = parts["grid"]
        rows = grid_rows(base, cur)
        write_result_table(
            folder / "grid.json",
            f"`{shown(cur['command'])}`: minutes and clustering_mean per cell",
            GRID_COLUMNS,
            rows,
            command,
            source=source_of([base, cur], commits),
            notes=f"{common}; largest |difference| of a cell's clustering_mean {max_difference(rows[:-2])}; load "
            f"average before: baseline {base['load_before']}, this tree {cur['load_before']}."
            + precision_note(base, cur),
        )


def reused_baseline(earlier: dict, part: str, baseline: Path) -> dict:
    """The baseline tree's measurement of `part` in an earlier record, refused unless it was of the same commit."""
    if part not in earlier["parts"] or earlier["commits"].split(" / ")[-1] != commit_of(baseline):
        raise SystemExit(f"--baseline-from: no {part} measurement of baseline {commit_of(baseline)} there")
    return earlier["parts"][part][0]


def main(argv: list[str] | None = None) -> None:
    """Measure the parts in both trees, print the tables, write the result files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline-ref", default="21a67c3", help="commit or ref to compare with (a worktree)")
    parser.add_argument("--parts", nargs="+", default=["sweep", "grid"], choices=["sweep", "grid"])
    parser.add_argument("--seeds", default="1,2,3", help="the sweep's seeds, comma-separated")
    parser.add_argument("--overrides", nargs="*", default=RECIPE_WORKLOAD, help="the sweep's overrides")
    parser.add_argument("--poolings", default="mean,last,weighted_mean,max,concat", help="the grid's poolings")
    parser.add_argument("--prompts", default="none,eol,cluster", help="the grid's prompts")
    parser.add_argument("--grid-overrides", nargs="*", default=["tasks=offline_1000"], help="the grid's overrides")
    parser.add_argument("--out", type=Path, help="runs and consoles (default: a new temp folder)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder of the result files")
    parser.add_argument("--no-prime", action="store_true", help="the installation caches are warm already")
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="measure the baseline tree only (its measurements.json feeds a later --baseline-from); no result files",
    )
    parser.add_argument("--tables-only", action="store_true", help="rewrite the result files from --out's measurements")
    parser.add_argument(
        "--baseline-from",
        type=Path,
        help="reuse the baseline tree's measurements of this earlier "
        "measurements.json (same ref and commands; the result files' notes say so)",
    )
    args = parser.parse_args(argv)
    if args.tables_only:
        if args.out is None:
            parser.error("--tables-only needs --out (the folder of an earlier run's measurements.json)")
        record = json.loads((args.out / "measurements.json").read_text())
        write_results(record, args.results)
        return print_results(record["parts"], args.results)
    args.out = (args.out or Path(tempfile.mkdtemp(prefix="embedexp-bench-sweep-"))).resolve()
    baseline = baseline_root(args.baseline_ref)
    trees = [
        ("baseline", f"baseline {args.baseline_ref}", baseline),
        ("current", f"this tree {commit_of(ROOT)[:7]}", ROOT),
    ]
    record = {
        "command": command_line("bench_sweep.py"),
        "baseline": args.baseline_ref,
        "commits": f"{commit_of(ROOT)} / {commit_of(baseline)}",
        "parts": {},
    }
    print(f"bench_sweep: {trees[0][1]} vs {trees[1][1]}; runs under {args.out}", flush=True)
    if not args.no_prime:
        prime(baseline, args)
    earlier = json.loads(args.baseline_from.read_text()) if args.baseline_from else None
    if earlier is not None:
        record["baseline_from"] = f"{args.baseline_from} ({earlier['parts'][args.parts[0]][0]['start']})"
    for part in args.parts:
        started = time.perf_counter()
        if earlier is not None:
            record["parts"][part] = [reused_baseline(earlier, part, trees[0][2]), measure(part, trees[1], args)]
        else:
            record["parts"][part] = [measure(part, tree, args) for tree in trees[: 1 if args.baseline_only else 2]]
        print(f"\n[{part}] measured in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        (args.out / "measurements.json").write_text(json.dumps(record, indent=2, default=str))
    if args.baseline_only:
        return print(f"baseline measured: {args.out / 'measurements.json'} (pass it to --baseline-from)")
    write_results(record, args.results)
    print_results(record["parts"], args.results)


def print_results(parts: dict, folder: Path) -> None:
    """Print the result files of `parts` just written to `folder`."""
    from embedexp.core.results import read_result_table

    for name in ("sweep", "sweep_quality", "grid"):
        if name.split("_")[0] in parts:
            table = read_result_table(folder / f"{name}.json")
            print(f"\n{table.title}\n\n{table.to_markdown(3)}\n\n{table.notes}\n{table.provenance_line()}")


if __name__ == "__main__":
    main()
