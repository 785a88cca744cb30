"""The docs' plots of result files: grouped bars of score columns, or lines (one per `series=` value and `y=` column)
with an interval; legends below the axes.

A legend never covers data: it sits under the plot (`fig.legend(loc="outside lower center")` with constrained layout),
and bars are named by what tells their rows apart (`embedexp.core.result_views.row_labels`).
"""

from __future__ import annotations

import fnmatch
import textwrap

from embedexp.core.result_views import label_columns, row_labels, score
from embedexp.core.results import ResultTable

WIDTH_INCHES = 7.0
LINE_STYLES = ["-", "--", ":", "-."]  # one per `series=` value of a line plot
LEGEND_COLUMN_CHARS = 32  # the longest name three legend columns fit across WIDTH_INCHES at font size 8


def plottable(cells: list) -> bool:
    """A column of scores: every non-empty cell parses (`score`), and there is at least one."""
    filled = [cell for cell in cells if cell not in ("", None)]
    return bool(filled) and all(score(cell) is not None for cell in filled)


def value_columns(table: ResultTable, columns: str | None) -> list[int]:
    """Indices of the plotted columns: those matching `columns` (comma-separated globs), else every score column."""
    patterns = [p for p in (columns or "").split(",") if p]
    return [
        i
        for i, name in enumerate(table.columns)
        if (patterns and any(fnmatch.fnmatchcase(name, p) for p in patterns))
        or (not patterns and plottable([row[i] for row in table.rows]))
    ]


def draw(table: ResultTable, options: dict[str, str]):
    """A matplotlib figure of the table: grouped horizontal bars, or a line with `x=` and `y=`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "x" in options:
        several = "series" in options or "," in options["y"]
        fig, ax = plt.subplots(figsize=(WIDTH_INCHES * (1.0 if several else 0.85), 3.2), layout="constrained")
        draw_line(ax, table, options)
        if ax.get_legend_handles_labels()[0]:  # several lines: each named below the axes
            fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    else:
        values = value_columns(table, options.get("columns"))
        table = rows_with_scores(table, values)  # a failed run's row has nothing to draw
        series = row_labels(table, label_columns(table, options.get("labels")))
        if len(values) == 1:  # one score: a bar per row, named on the y axis, no legend
            fig, ax = plt.subplots(figsize=(WIDTH_INCHES, 0.9 + 0.3 * len(series)), layout="constrained")
            draw_rows(ax, table, values[0], series)
            ax.set_title(table.title, fontsize=10)
            return fig
        longest = max(map(len, series))  # long names: fewer columns fit the width, the longest wrapped in one
        columns = 3 if longest <= LEGEND_COLUMN_CHARS else 2 if longest <= 1.5 * LEGEND_COLUMN_CHARS else 1
        series = [textwrap.fill(name, 3 * LEGEND_COLUMN_CHARS) for name in series]
        height = (
            0.9 + 0.42 * len(values) * max(1, len(series)) ** 0.5 + 0.25 * sum(1 + name.count("\n") for name in series)
        )
        fig, ax = plt.subplots(figsize=(WIDTH_INCHES, height), layout="constrained")
        draw_bars(ax, table, values, series)
        fig.legend(loc="outside lower center", ncols=min(columns, len(series)), fontsize=8, frameon=False)
    ax.set_title(table.title, fontsize=10)
    return fig


def rows_with_scores(table: ResultTable, values: list[int]) -> ResultTable:
    """The table without the rows that have no score in any of the `values` columns."""
    rows = [row for row in table.rows if any(score(row[i]) is not None for i in values)]
    return ResultTable(table.title, table.columns, rows, table.command, table.source, table.notes)


def short_name(column: str) -> str:
    """A column's name on an axis: a task's name without its `Clustering` suffix (the title says what is scored)."""
    return column.removesuffix("Clustering") or column


def draw_bars(ax, table: ResultTable, values: list[int], series: list[str]) -> None:
    """One bar per row and column, the column's name on the y axis, its interval as an error bar."""
    height = 0.8 / max(1, len(series))
    for number, (name, row) in enumerate(zip(series, table.rows)):
        points = [score(row[i]) or (float("nan"), 0.0) for i in values]
        offsets = [v + number * height for v in range(len(values))]
        ax.barh(offsets, [p[0] for p in points], height, xerr=[p[1] for p in points], capsize=3, label=name)
    names = [short_name(table.columns[i]) for i in values]
    ax.set_yticks([v + 0.4 - height / 2 for v in range(len(values))], names, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def draw_rows(ax, table: ResultTable, value: int, series: list[str]) -> None:
    """One bar per row for the `value` column, the row's name on the y axis, its interval as an error bar."""
    points = [score(row[value]) or (float("nan"), 0.0) for row in table.rows]
    ax.barh(range(len(series)), [p[0] for p in points], 0.7, xerr=[p[1] for p in points], capsize=3)
    ax.set_yticks(range(len(series)), series, fontsize=8)
    ax.set_xlabel(table.columns[value])
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def draw_line(ax, table: ResultTable, options: dict[str, str]) -> None:
    """`y` against `x` with `low`/`high` as the interval; with `y=a,b` a line per column (a colour each), with
    `series=<column>` a line per value of that column (a line style each), e.g. `series=model y=prompt,text`."""
    names = options["y"].split(",")
    series = table.columns.index(options["series"]) if "series" in options else None
    groups = list(dict.fromkeys(row[series] for row in table.rows)) if series is not None else [None]
    low, high = (options.get("low"), options.get("high")) if len(names) == 1 else (None, None)
    for number, group in enumerate(groups):
        rows = [row for row in table.rows if series is None or row[series] == group]
        column = {name: [row[table.columns.index(name)] for row in rows] for name in table.columns}
        xs = [str(x) for x in column[options["x"]]]
        for colour, name in enumerate(names):
            ys = [float(y) for y in column[name]]
            errors = None
            if low and high:
                below = [y - float(value) for y, value in zip(ys, column[low])]
                errors = [below, [float(value) - y for y, value in zip(ys, column[high])]]
            label = " · ".join(str(part) for part in (group, name if len(names) > 1 else None) if part is not None)
            style = {"color": f"C{colour}", "linestyle": LINE_STYLES[number % len(LINE_STYLES)]}
            if len(groups) * len(names) > 1:
                style.update(markersize=3, label=label)
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=4, **style)
    ax.set_xlabel(options["x"])
    ax.set_ylabel(", ".join(names))
    ax.grid(alpha=0.3)
