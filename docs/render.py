"""Render every measured table and plot of README.md and docs/ from its result file; `make docs` runs this first.

A page marks what is rendered; the text between a marker and its end marker is replaced:

    <!-- result: results/recipe.json [transpose] [labels=config,stage] [where=stage:fine_*] [hide=n,config]
         [digits=3] [pending="make recipe"] -->
    (the table, the file's notes, and a `Source:` line naming its command, commit, date and machine)
    <!-- /result -->

    <!-- plot: results/recipe.json [columns=clustering_mean,*Clustering] [where=...] [name=recipe]
         [x=n_docs y=spearman low=ci_low high=ci_high] [pending=...] -->
    ![title](img/recipe.png)
    <!-- /plot -->

    <!-- config-groups: train -->
    (each config group of `embedexp train` with its options, from conf/: the first comment line of each YAML)
    <!-- /config-groups -->

A marker holds one line. Paths are relative to the repository root. A result file that does not exist yet renders
as a note naming the command that writes it (`pending=`). Plots are PNGs in docs/img/: grouped bars of the
`mean ± CI` (or plain float) columns, one bar per row, or with `x=`/`y=` a line with `low=`/`high=` as its interval.
Each PNG carries the SHA-256 of its result file and marker in its metadata, so a stale plot is found without
comparing pixels.

    python docs/render.py          # rewrite the pages and plots
    python docs/render.py --check  # list stale pages and plots, exit 1 if any (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"(<!-- (result|plot|config-groups): (.*?) -->\n)(.*?)(<!-- /\2 -->)", re.S)
SCORE = re.compile(r"^(-?\d+(?:\.\d+)?)(?: ± (\d+(?:\.\d+)?)| \(n=\d+\))?$")
IMAGE_DIR = "docs/img"
HASH_KEY = "Description"


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def parse_marker(args: str) -> tuple[str, dict[str, str], set[str]]:
    """(target, key=value options, flags) of a marker's arguments."""
    tokens = shlex.split(args)
    options = dict(t.split("=", 1) for t in tokens[1:] if "=" in t)
    return tokens[0], options, {t for t in tokens[1:] if "=" not in t}


def load(root: Path, target: str):
    """The result table at `target`, or None when the file does not exist yet."""
    from embedexp.core.results import read_result_table

    path = root / target
    return read_result_table(path) if path.is_file() else None


def pending(target: str, options: dict[str, str]) -> str:
    """The note shown until a result file exists."""
    command = options.get("pending")
    how = f": `{command}` writes it" if command else ""
    return f"*Not measured yet: `{target}` does not exist{how}; then `make docs` renders it here.*"


def selected(table, options: dict[str, str]):
    """The table restricted to the rows whose `where=<column>:<pattern>` cell matches."""
    if "where" not in options:
        return table
    column, _, pattern = options["where"].partition(":")
    index = table.columns.index(column)
    table.rows = [row for row in table.rows if fnmatch.fnmatchcase(str(row[index]), pattern)]
    return table


def hidden(table, options: dict[str, str]):
    """The table without the `hide=` columns."""
    drop = set(options.get("hide", "").split(",")) - {""}
    keep = [i for i, column in enumerate(table.columns) if column not in drop]
    table.columns = [table.columns[i] for i in keep]
    table.rows = [[row[i] for i in keep] for row in table.rows]
    return table


def transposed(table, options: dict[str, str]):
    """Rows become columns: headed by the `labels=` columns' cells (default: the first column) joined with ` · `."""
    labels = options.get("labels", table.columns[0]).split(",")
    keep = [i for i, c in enumerate(table.columns) if c not in labels]
    positions = [table.columns.index(label) for label in labels]
    heads = [" · ".join(str(row[i]) for i in positions) for row in table.rows]
    table.rows = [[table.columns[i], *(row[i] for row in table.rows)] for i in keep]
    table.columns = ["", *heads]
    return table


def result_block(root: Path, target: str, options: dict[str, str], flags: set[str]) -> str:
    """The Markdown of a `result` marker."""
    table = load(root, target)
    if table is None:
        return pending(target, options)
    table = hidden(selected(table, options), options)
    if "transpose" in flags:
        table = transposed(table, options)
    parts = [table.to_markdown(int(options.get("digits", 4)))]
    if table.notes:
        parts.append(table.notes[0].upper() + table.notes[1:] + ("" if table.notes.endswith(".") else "."))
    parts.append(table.provenance_line())
    return "\n\n".join(parts)


def plot_digest(root: Path, target: str, args: str) -> str:
    """SHA-256 of the result file's bytes and the marker's arguments: what a plot was drawn from."""
    return hashlib.sha256((root / target).read_bytes() + b"\0" + args.encode()).hexdigest()


def image_path(root: Path, target: str, options: dict[str, str]) -> Path:
    """Where a plot of `target` goes: docs/img/<name or the file's stem>.png."""
    return root / IMAGE_DIR / f"{options.get('name', Path(target).stem)}.png"


def score(cell) -> tuple[float, float] | None:
    """(value, half-width) of a plotted cell: a float, or text `0.51 ± 0.01` / `0.51 (n=1)`; None otherwise."""
    if isinstance(cell, float):
        return cell, 0.0
    found = SCORE.match(str(cell)) if isinstance(cell, str) and ("±" in cell or "(n=" in cell) else None
    return (float(found.group(1)), float(found.group(2) or 0.0)) if found else None


def plottable(cells: list) -> bool:
    """A column of scores: every non-empty cell parses (`score`), and there is at least one."""
    filled = [cell for cell in cells if cell not in ("", None)]
    return bool(filled) and all(score(cell) is not None for cell in filled)


def draw(table, options: dict[str, str]):
    """A matplotlib figure of the table: grouped horizontal bars, or a line with `x=` and `y=`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "x" in options:
        column = {name: [row[table.columns.index(name)] for row in table.rows] for name in table.columns}
        xs = [str(x) for x in column[options["x"]]]
        ys = [float(y) for y in column[options["y"]]]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        low, high = options.get("low"), options.get("high")
        errors = None
        if low and high:
            below = [y - float(value) for y, value in zip(ys, column[low])]
            errors = [below, [float(value) - y for y, value in zip(ys, column[high])]]
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=4)
        ax.set_xlabel(options["x"])
        ax.set_ylabel(options["y"])
    else:
        patterns = options.get("columns", "").split(",") if options.get("columns") else None
        values = [
            i
            for i, name in enumerate(table.columns)
            if (patterns and any(fnmatch.fnmatchcase(name, p) for p in patterns))
            or (not patterns and plottable([row[i] for row in table.rows]))
        ]
        labels = [i for i in range(len(table.columns)) if i not in values and not isinstance(table.rows[0][i], int)]
        series = [" · ".join(str(row[i]) for i in labels) for row in table.rows]
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(values) * max(1, len(series)) ** 0.5))
        height = 0.8 / max(1, len(series))
        for number, (name, row) in enumerate(zip(series, table.rows)):
            points = [score(row[i]) or (float("nan"), 0.0) for i in values]
            offsets = [v + number * height for v in range(len(values))]
            ax.barh(offsets, [p[0] for p in points], height, xerr=[p[1] for p in points], capsize=3, label=name)
        ax.set_yticks([v + 0.4 - height / 2 for v in range(len(values))], [table.columns[i] for i in values])
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(table.title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_block(root: Path, page: Path, target: str, options: dict[str, str], args: str, write: bool) -> str:
    """The Markdown of a `plot` marker on `page`; with `write`, (re)draws its PNG when its digest changed."""
    table = load(root, target)
    if table is None:
        return pending(target, options)
    image = image_path(root, target, options)
    digest = plot_digest(root, target, args)
    if write and plot_digest_of(image) != digest:
        image.parent.mkdir(parents=True, exist_ok=True)
        figure = draw(selected(table, options), options)
        figure.savefig(image, format="png", dpi=110, metadata={HASH_KEY: digest, "Software": None})
    link = os.path.relpath(image, page.parent).replace(os.sep, "/")
    return f"![{table.title}]({link})"


def plot_digest_of(image: Path) -> str | None:
    """The digest a committed PNG was drawn from (None when missing or unmarked)."""
    if not image.is_file():
        return None
    from PIL import Image

    with Image.open(image) as picture:
        return picture.text.get(HASH_KEY)


def config_groups_block(command: str) -> str:
    """Each config group of a command with its options as a Markdown table (from embedexp.cli.usage)."""
    from embedexp.cli.usage import defaults_list, group_options

    rows = ["| group | option | what it does |", "|---|---|---|"]
    for group, default in defaults_list(command).items():
        for name, text in group_options(group).items():
            mark = " (default)" if name == default else ""
            cell = text.replace("|", "\\|")
            rows.append(f"| `{group}` | `{name}`{mark} | {cell} |")
    return "\n".join(rows)


def render_page(text: str, page: Path, root: Path = ROOT, write: bool = False) -> str:
    """The page with every marked block rendered (plots drawn only with `write`)."""

    def block(match: re.Match) -> str:
        opening, kind, args, _, closing = match.groups()
        target, options, flags = parse_marker(args)
        if kind == "result":
            body = result_block(root, target, options, flags)
        elif kind == "plot":
            body = plot_block(root, page, target, options, args, write)
        else:
            body = config_groups_block(target)
        return f"{opening}\n{body}\n\n{closing}"

    return MARKER.sub(block, text)


def stale(root: Path = ROOT) -> list[str]:
    """Pages whose marked blocks differ from what their files render, and plots drawn from other data."""
    found = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        if render_page(text, page, root) != text:
            found.append(f"{page.relative_to(root)}: a table or plot differs from its result file")
        for match in MARKER.finditer(text):
            if match.group(2) == "plot":
                target, options, _ = parse_marker(match.group(3))
                image = image_path(root, target, options)
                if (root / target).is_file() and plot_digest_of(image) != plot_digest(root, target, match.group(3)):
                    found.append(f"{image.relative_to(root)}: not drawn from the current {target}")
    return found


def render_all(root: Path = ROOT) -> list[Path]:
    """Rewrite every page whose blocks changed (and redraw stale plots); returns the pages rewritten."""
    changed = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        rendered = render_page(text, page, root, write=True)
        if rendered != text:
            page.write_text(rendered, encoding="utf-8")
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    """Command line: render, or `--check` only."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only list stale pages and plots; exit 1 if any")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.root)
        print("\n".join(problems) or "every table and plot matches its result file")
        return 1 if problems else 0
    for page in render_all(args.root):
        print(f"rendered {page.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
