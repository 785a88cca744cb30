"""Render every measured table and plot of README.md and docs/ from its result file; `make docs` runs this first.

A page marks what is rendered; the text between a marker and its end marker is replaced:

    <!-- result: results/recipe.json [transpose] [labels=config,stage] [where=stage:fine_*|baseline] [hide=n,config]
         [show=config,stage,clustering_mean] [overlaps=clustering_mean] [digits=3] [pending="make recipe"] -->
    (the table, which neighbours' intervals overlap (`overlaps=`), the file's notes, and a `Source:` line naming its
    command, commit, date and machine)
    <!-- /result -->

    <!-- line: results/recipe.json column=clustering_mean [where=...] [labels=...] [pending=...] -->
    (one sentence: each row's name and its `column` cell, then the `Source:` line)
    <!-- /line -->

    <!-- plot: results/recipe.json [columns=clustering_mean,*Clustering] [where=...] [name=recipe]
         [x=n_docs y=spearman low=ci_low high=ci_high] [x=layer y=prompt,text series=model] [pending=...] -->
    ![title](img/recipe.png)
    <!-- /plot -->

    <!-- config-groups: train -->
    (each config group of `embedexp train` with its options, from conf/: the first comment line of each YAML)
    <!-- /config-groups -->

A marker holds one line. Paths are relative to the repository root. A result file that does not exist yet renders
as a note naming the command that writes it (`pending=`). Rows are named by what tells them apart
(`embedexp.core.result_views`: the `labels=` columns, by default a report's config and stage, without `all runs`);
floats print at the decimals their column needs (at most `digits=`, default 4). Plots are PNGs in docs/img/
(`embedexp.analysis.report.result_plot`): grouped bars of the `mean ± CI` (or plain float) columns, one bar per row,
the legend below the axes, or with `x=`/`y=` a line with `low=`/`high=` as its interval (several `y=` columns: a
line each; `series=<column>`: a line per value of that column, e.g. each model).
Each PNG carries the SHA-256 of its result file and marker in its metadata, so a stale plot is found without
comparing pixels.

    python docs/render.py          # rewrite the pages and plots
    python docs/render.py --check  # list stale pages and plots, exit 1 if any (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"(<!-- (result|plot|line|config-groups): (.*?) -->\n)(.*?)(<!-- /\2 -->)", re.S)
PENDING_NOTE = "Not measured yet"
# the drawing code's version, part of every plot's digest: a change redraws every plot
PLOT_STYLE = "6: legend below the axes (fewer columns, the longest names wrapped), rows named by what differs"
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
    return f"*{PENDING_NOTE}: `{target}` does not exist{how}; then `make docs` renders it here.*"


def shaped(table, options: dict[str, str]):
    """The table as a marker asks: its `where=` rows, without `hide=` / with only `show=` columns, rows named."""
    from embedexp.core.result_views import keep_columns, labelled, select_rows

    table = keep_columns(select_rows(table, options.get("where")), options.get("hide", ""), options.get("show", ""))
    return labelled(table, options.get("labels"))


def result_block(root: Path, target: str, options: dict[str, str], flags: set[str]) -> str:
    """The Markdown of a `result` marker."""
    from embedexp.core.result_views import transposed

    table = load(root, target)
    if table is None:
        return pending(target, options)
    table = shaped(table, options)
    by_row = "transpose" in flags
    parts = [(transposed(table) if by_row else table).to_markdown(int(options.get("digits", 4)), by_row=by_row)]
    if options.get("overlaps"):
        parts.append(overlap_note(table, options["overlaps"]))
    if table.notes:
        parts.append(table.notes[0].upper() + table.notes[1:] + ("" if table.notes.endswith(".") else "."))
    parts.append(table.provenance_line())
    return "\n\n".join(parts)


def overlap_note(table, column: str) -> str:
    """Which rows, ranked by `column`, cannot be told from the next one: their intervals overlap."""
    from embedexp.core.result_views import overlapping_neighbours

    pairs = overlapping_neighbours(table, column)
    if not pairs:
        return f"Ranked by `{column}`, every row's interval is clear of its neighbour's."
    named = "; ".join(f"{upper} and {lower}" for upper, lower in pairs)
    return (
        f"Ranked by `{column}`, these neighbours' intervals overlap (not told apart at this number of seeds): {named}."
    )


def line_block(root: Path, target: str, options: dict[str, str]) -> str:
    """The Markdown of a `line` marker: `column` of each row, named, in one sentence; then the source."""
    from embedexp.core.result_views import label_columns, row_labels, select_rows
    from embedexp.core.results import format_cell

    table = load(root, target)
    if table is None:
        return pending(target, options)
    column = options["column"]
    table = select_rows(table, options.get("where"))
    names = row_labels(table, label_columns(table, options.get("labels")))
    index = table.columns.index(column)
    digits = int(options.get("digits", 4))
    cells = " · ".join(f"{name} **{format_cell(row[index], digits)}**" for name, row in zip(names, table.rows))
    return f"`{column}` ({table.title}): {cells}.\n\n{table.provenance_line()}"


def plot_digest(root: Path, target: str, args: str) -> str:
    """SHA-256 of the result file's bytes, the marker's arguments and the plot style: what a plot was drawn from."""
    drawn_from = (root / target).read_bytes() + b"\0" + args.encode() + b"\0" + PLOT_STYLE.encode()
    return hashlib.sha256(drawn_from).hexdigest()


def image_path(root: Path, target: str, options: dict[str, str]) -> Path:
    """Where a plot of `target` goes: docs/img/<name or the file's stem>.png."""
    return root / IMAGE_DIR / f"{options.get('name', Path(target).stem)}.png"


def plot_block(root: Path, page: Path, target: str, options: dict[str, str], args: str, write: bool) -> str:
    """The Markdown of a `plot` marker on `page`; with `write`, (re)draws its PNG when its digest changed."""
    table = load(root, target)
    if table is None:
        return pending(target, options)
    image = image_path(root, target, options)
    digest = plot_digest(root, target, args)
    if write and plot_digest_of(image) != digest:
        image.parent.mkdir(parents=True, exist_ok=True)
        from embedexp.analysis.report.result_plot import draw
        from embedexp.core.result_views import select_rows

        figure = draw(select_rows(table, options.get("where")), options)
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
        elif kind == "line":
            body = line_block(root, target, options)
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
