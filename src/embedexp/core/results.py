"""Result files: measured tables that the docs render, each naming the command, commit and machine that made it.

A result file is JSON: `title`, `columns`, `rows` (lists of cells), `command` (what to run to make it again),
`notes`, and `source` (git commit, date, CPU model and class, threads, resolved precisions). Commands that measure
something write one with `write_result_table`; `make docs` renders every table in the docs from these files, so a
figure in the docs is never typed by hand.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embedexp.core.atomic import atomic_write_text
from embedexp.core.errors import DataError

Cell = str | int | float | bool | None


@dataclass
class ResultTable:
    """One measured table and where it came from."""

    title: str
    columns: list[str]
    rows: list[list[Cell]]
    command: str
    source: dict = field(default_factory=dict)
    notes: str = ""

    def to_markdown(self, digits: int = 4) -> str:
        """The table as GitHub Markdown (floats rounded to `digits` significant decimals)."""
        header = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(format_cell(cell, digits) for cell in row) + " |" for row in self.rows]
        return "\n".join([header, rule, *body])

    def provenance_line(self) -> str:
        """One line naming the command, commit, date, machine and precision (shown under each rendered table)."""
        source = self.source
        machine = source.get("machine", {})
        commits = str(source.get("git_commit") or "unknown").split(" / ")
        parts = [
            f"`{self.command}`",
            "commit " + " / ".join(c[:12] + ("-dirty" if c.endswith("-dirty") else "") for c in commits),
            str(source.get("date") or "undated") + (f" ({source['runs']} runs)" if source.get("runs") else ""),
            f"{machine.get('cpu_model') or 'unknown CPU'} ({machine.get('cpu_capability') or '?'}, "
            f"{machine.get('threads') or '?'} threads)",
        ]
        if machine.get("precision"):
            parts.append("precision " + ", ".join(f"{k}={v}" for k, v in machine["precision"].items()))
        if machine.get("bf16_speedup"):
            parts.append(f"probe: bf16 autocast {machine['bf16_speedup']}x fp32")
        return "Source: " + "; ".join(parts)


def format_cell(cell: Cell, digits: int = 4) -> str:
    """A table cell as text: floats rounded, None empty, pipes escaped."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ""
    if isinstance(cell, float):
        return f"{cell:.{digits}f}"
    return str(cell).replace("|", "\\|")


def current_source(precision: dict[str, str] | None = None) -> dict:
    """The commit, the date and the machine (CPU model, capability, threads, resolved precisions) of this process."""
    from embedexp.core.hardware import machine_info
    from embedexp.core.provenance import git_commit

    machine = machine_info(**(precision or {}))
    return {
        "git_commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": {
            **{k: machine[k] for k in ("cpu_model", "cpu_capability", "threads", "precision") if k in machine},
            "bf16_speedup": (machine.get("precision_probe") or {}).get("bf16_speedup"),
        },
    }


def merge_sources(sources: list[dict]) -> dict:
    """One `source` for a table measured by several runs: each field's distinct values joined with ` / `."""

    def joined(values) -> str | None:
        distinct = list(dict.fromkeys(str(v) for v in values if v not in (None, "", {})))
        return " / ".join(distinct) or None

    machines = [s.get("machine") or {} for s in sources]
    precisions = [m.get("precision") or {} for m in machines]
    phases = list(dict.fromkeys(k for p in precisions for k in p))
    dates = sorted(str(s["date"]) for s in sources if s.get("date"))
    return {
        "git_commit": joined(s.get("git_commit") for s in sources),
        "date": dates[0] if dates and dates[0] == dates[-1] else (f"{dates[0]} to {dates[-1]}" if dates else None),
        "machine": {
            **{k: joined(m.get(k) for m in machines) for k in ("cpu_model", "cpu_capability", "threads")},
            "precision": {phase: joined(p.get(phase) for p in precisions) for phase in phases},
            "bf16_speedup": spread((m.get("precision_probe") or {}).get("bf16_speedup") for m in machines),
        },
        "runs": len(sources),
    }


def spread(values) -> str | None:
    """`min-max` of the numbers among `values` (one number alone), None without any."""
    numbers = sorted(float(v) for v in values if isinstance(v, int | float))
    if not numbers:
        return None
    low, high = f"{numbers[0]:.2f}", f"{numbers[-1]:.2f}"
    return low if low == high else f"{low}-{high}"


def write_result_table(
    path: str | Path,
    title: str,
    columns: list[str],
    rows: list[list[Cell]],
    command: str,
    precision: dict[str, str] | None = None,
    notes: str = "",
    source: dict | None = None,
) -> Path:
    """Write a result file atomically; `source` defaults to this process's commit, date and machine."""
    width = len(columns)
    for number, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}: row {number} has {len(row)} cells for {width} columns")
    source = source or current_source(precision)
    table = ResultTable(title, list(columns), [list(r) for r in rows], command, source, notes)
    return atomic_write_text(path, json.dumps(asdict(table), indent=2, default=str) + "\n")


def read_result_table(path: str | Path) -> ResultTable:
    """Load a result file; a missing key or a ragged row is an error naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        table = ResultTable(**data)
    except (OSError, json.JSONDecodeError, TypeError) as error:
        raise DataError(f"{path}: not a result file ({error})") from error
    for number, row in enumerate(table.rows):
        if len(row) != len(table.columns):
            raise DataError(f"{path}: row {number} has {len(row)} cells for {len(table.columns)} columns")
    return table
