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

NOT_RECORDED = "not recorded"  # what a source line says of a fact its result file lacks
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

    def to_markdown(self, digits: int = 4, by_row: bool = False) -> str:
        """The table as Markdown, each column's floats (each row's, `by_row`) at the decimals they need, <= `digits`."""
        header = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = [["" for _ in row] for row in self.rows]
        series = self.rows if by_row else list(zip(*self.rows))
        for i, cells in enumerate(series):
            places = decimals(cells, digits)
            for j, cell in enumerate(cells):
                body[i if by_row else j][j if by_row else i] = format_cell(cell, places)
        return "\n".join([header, rule, *("| " + " | ".join(row) + " |" for row in body)])

    def provenance_line(self) -> str:
        """One line naming the command, commit, date, machine and precision (shown under each rendered table)."""
        source = self.source
        machine = source.get("machine", {})
        commits = str(source.get("git_commit") or NOT_RECORDED).split(" / ")
        threads = f", {machine['threads']} threads" if machine.get("threads") else ""
        capability = machine.get("cpu_capability") or f"capability {NOT_RECORDED}"
        runs = f" ({source['runs']} run{'s' if source.get('runs') != 1 else ''})" if source.get("runs") else ""
        parts = [
            f"`{self.command}`",
            "commit " + " / ".join(c if c == NOT_RECORDED else short_commit(c) for c in commits),
            str(source.get("date") or f"date {NOT_RECORDED}") + runs,
            f"{machine.get('cpu_model') or f'CPU {NOT_RECORDED}'} ({capability}{threads})",
        ]
        if machine.get("precision"):
            parts.append("precision " + ", ".join(f"{k}={v}" for k, v in machine["precision"].items()))
        if machine.get("bf16_speedup"):
            speedup = machine["bf16_speedup"]  # a number, or a range of merged sources ("1.93-2.20")
            speedup = f"{speedup:.2f}" if isinstance(speedup, float | int) else speedup
            parts.append(f"probe: bf16 autocast {speedup}x fp32")
        if source.get("recovered_from"):  # a fact the writer did not record, found later: where it was found
            parts.append(f"recovered from {source['recovered_from']}")
        return "Source: " + "; ".join(parts)


def short_commit(commit: str) -> str:
    """A commit hash cut to 12 characters, `-dirty` kept."""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def decimals(cells, digits: int = 4) -> int:
    """The fewest decimals (at most `digits`) that print every float among `cells` as `digits` would."""
    floats = [c for c in cells if isinstance(c, float) and math.isfinite(c)]
    for places in range(digits + 1):
        if all(round(c, places) == round(c, digits) for c in floats):
            return places
    return digits


def format_cell(cell: Cell, digits: int = 4) -> str:
    """A table cell as text: floats rounded to `digits` decimals, None empty, pipes escaped."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ""
    if isinstance(cell, float):
        return f"{cell:.{digits}f}"
    return str(cell).replace("|", "\\|")


def portable_command(command: str, cwd: Path | None = None) -> str:
    """The command with this directory's absolute path dropped, so a result file names no machine's folders."""
    prefix = str(cwd or Path.cwd()).rstrip("/") + "/"
    return command.replace(prefix, "")


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
    dates = sorted(part for s in sources if s.get("date") for part in str(s["date"]).split(" to "))
    return {
        "git_commit": joined(s.get("git_commit") for s in sources),
        "date": dates[0] if dates and dates[0] == dates[-1] else (f"{dates[0]} to {dates[-1]}" if dates else None),
        "machine": {
            **{k: joined(m.get(k) for m in machines) for k in ("cpu_model", "cpu_capability", "threads")},
            "precision": {phase: joined(p.get(phase) for p in precisions) for phase in phases},
            "bf16_speedup": spread(
                (m.get("precision_probe") or {}).get("bf16_speedup") or m.get("bf16_speedup") for m in machines
            ),  # a run's probe, or the spread of a source merged before
        },
        "runs": sum(int(s.get("runs") or 1) for s in sources),  # a merged source counts the runs it stands for
    }


def spread(values) -> str | None:
    """`min-max` of the numbers among `values` (numbers, or an earlier spread's `min-max`), None without any."""
    numbers = sorted(number for value in values for number in numbers_in(value))
    if not numbers:
        return None
    low, high = f"{numbers[0]:.2f}", f"{numbers[-1]:.2f}"
    return low if low == high else f"{low}-{high}"


def numbers_in(value) -> list[float]:
    """A number as a one-item list, the ends of a `min-max` spread string, else nothing."""
    if isinstance(value, int | float):
        return [float(value)]
    try:
        return [float(part) for part in value.split("-")] if isinstance(value, str) else []
    except ValueError:
        return []


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
    table = ResultTable(title, list(columns), [list(r) for r in rows], portable_command(command), source, notes)
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
