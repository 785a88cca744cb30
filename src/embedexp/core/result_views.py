"""Views of a result table for the docs: rows chosen, columns shown, rows named by what differs, transposed.

`docs/render.py` shapes every rendered table and plot through these, so a page states only what tells its rows apart
(`pooling=mean · fine_tuned`, not `all runs · fine_tuned`) and a wide table can turn its tasks into rows.
"""

from __future__ import annotations

import fnmatch
import re

from embedexp.core.results import ResultTable

LABEL_SEPARATOR = " · "
SAYS_NOTHING = {"", "all runs", "baseline"}  # label parts that tell no row apart (the report's defaults)
REPORT_LABELS = ("config", "stage")  # the columns that name a report's rows
PACKAGED_OVERRIDE = re.compile(r"(?<!\S)([\w/.+~-]+)@[\w.]+=")  # `data/source@data.sources.only=x`: group@package=
SCORE = re.compile(r"^(-?\d+(?:\.\d+)?)(?: ± (\d+(?:\.\d+)?)| \(n=\d+\))?$")


def score(cell) -> tuple[float, float] | None:
    """(value, half-width) of a score cell: a float, or text `0.51 ± 0.01` / `0.51 (n=1)`; None otherwise."""
    if isinstance(cell, float):
        return cell, 0.0
    found = SCORE.match(str(cell)) if isinstance(cell, str) and ("±" in cell or "(n=" in cell) else None
    return (float(found.group(1)), float(found.group(2) or 0.0)) if found else None


def select_rows(table: ResultTable, where: str | None) -> ResultTable:
    """The table restricted to rows whose `<column>:<glob>[|<glob>...]` cell matches one glob (`where`; all rows
    without it)."""
    if not where:
        return table
    column, _, pattern = where.partition(":")
    index = table.columns.index(column)
    rows = [row for row in table.rows if any(fnmatch.fnmatchcase(str(row[index]), p) for p in pattern.split("|"))]
    return ResultTable(table.title, table.columns, rows, table.command, table.source, table.notes)


def keep_columns(table: ResultTable, hide: str = "", show: str = "") -> ResultTable:
    """The table without the `hide` columns and, with `show` (comma-separated globs), with only those columns."""
    drop = set(hide.split(",")) - {""}
    patterns = [p for p in show.split(",") if p]
    keep = [
        i
        for i, name in enumerate(table.columns)
        if name not in drop and (not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns))
    ]
    rows = [[row[i] for i in keep] for row in table.rows]
    return ResultTable(table.title, [table.columns[i] for i in keep], rows, table.command, table.source, table.notes)


def label_columns(table: ResultTable, labels: str | None = None) -> list[str]:
    """The columns naming the rows: `labels` (comma-separated), else a report's config and stage, else the first."""
    if labels:
        return labels.split(",")
    found = [c for c in REPORT_LABELS if c in table.columns]
    return found or table.columns[:1]


def label_part(column: str, cell) -> str:
    """One label cell as a reader needs it: nothing for `all runs`, a report's baseline by its model's name."""
    text = str(cell if cell is not None else "").strip()
    if column not in REPORT_LABELS:
        return text
    if text.startswith("baseline "):
        text = text[len("baseline ") :].rsplit("/", 1)[-1]
    text = PACKAGED_OVERRIDE.sub(r"\1=", text)  # an override's group says what differs; its package is plumbing
    return "" if text in SAYS_NOTHING else text


def row_labels(table: ResultTable, columns: list[str]) -> list[str]:
    """Each row's name from its label cells, leaving out parts every row shares (with several rows) and empty ones."""
    positions = [table.columns.index(c) for c in columns]
    parts = [[label_part(c, row[i]) for c, i in zip(columns, positions)] for row in table.rows]
    shared = [len(table.rows) > 1 and len({p[k] for p in parts}) == 1 for k in range(len(positions))]
    names = [LABEL_SEPARATOR.join(p for k, p in enumerate(row) if p and not shared[k]) for row in parts]
    return [name or table.title for name in names]


def labelled(table: ResultTable, labels: str | None = None, head: str = "run") -> ResultTable:
    """The table with its label columns replaced by one column of row names headed `head` (a report's, or `labels`)."""
    if not labels and not any(c in table.columns for c in REPORT_LABELS):
        return table  # a benchmark's table: its first column names its rows as written
    columns = label_columns(table, labels)
    names = row_labels(table, columns)
    keep = [i for i, c in enumerate(table.columns) if c not in columns]
    rows = [[name, *(row[i] for i in keep)] for name, row in zip(names, table.rows)]
    heading = columns[0] if len(columns) == 1 else head
    return ResultTable(
        table.title, [heading, *(table.columns[i] for i in keep)], rows, table.command, table.source, table.notes
    )


def transposed(table: ResultTable) -> ResultTable:
    """Rows become columns headed by the first column's cells (a labelled table's row names)."""
    rows = [[name, *(row[i] for row in table.rows)] for i, name in enumerate(table.columns) if i > 0]
    columns = ["", *(str(row[0]) for row in table.rows)]
    return ResultTable(table.title, columns, rows, table.command, table.source, table.notes)


def overlapping_neighbours(table: ResultTable, column: str) -> list[tuple[str, str]]:
    """Rows next to each other when ranked by `column` whose intervals overlap (first column: the rows' names)."""
    index = table.columns.index(column)
    ranked = sorted(
        ((score(row[index]), str(row[0])) for row in table.rows if score(row[index]) is not None), reverse=True
    )
    return [
        (upper, lower)
        for ((high, high_width), upper), ((low, low_width), lower) in zip(ranked, ranked[1:])
        if high_width + low_width > 0 and high - high_width <= low + low_width
    ]
