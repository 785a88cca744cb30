"""The site reads as results: rows named by what differs, numbers at their precision, legends off the data, every
source line complete, and no "Not measured yet" outside the allow-lists below."""

from __future__ import annotations

import re

import pytest

from embedexp.core.config import PROJECT_ROOT
from embedexp.core.result_views import labelled
from embedexp.core.results import NOT_RECORDED, ResultTable
from tests.test_docs import render

# result files that cannot be measured on a CPU machine without the hub, each with its reason
GPU_ONLY = {
    "results/paper_table.json": "Qwen3-0.6B and Llama-3.2-1B from the Hugging Face Hub on MTEB(eng, v1), a GPU each",
}
# result files still waiting for their CPU measurement (issues #29, #30): each with the command that writes it; an
# entry leaves this list when its file lands (the test fails on an entry whose file exists)
PENDING = {}
# result files written before their writers recorded every fact: what was recovered is said on their source line,
# the rest reads "not recorded"; no other file may say it
LEGACY_UNRECORDED = {"results/recipe_full.json"}
PENDING_BLOCK = re.compile(r"\*Not measured yet: `([^`]+)` does not exist(?:: `(.*?)` writes it)?;")
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|mnt)/")
MARKED_BLOCK = re.compile(r"<!-- (?:result|line): (\S+)[^\n]*-->\n(.*?)<!-- /(?:result|line) -->", re.S)


def rendered_pages() -> dict[str, str]:
    """Every page of the site as `make docs` renders it, by path."""
    return {
        str(page.relative_to(PROJECT_ROOT)): render.render_page(page.read_text(encoding="utf-8"), page, PROJECT_ROOT)
        for page in render.pages(PROJECT_ROOT)
    }


def test_no_page_waits_for_a_result_outside_the_allow_lists():
    shown = {}
    for page, text in rendered_pages().items():
        for target, command in PENDING_BLOCK.findall(text):
            shown.setdefault(target, []).append((page, command))
    unlisted = {t: pages for t, pages in shown.items() if t not in GPU_ONLY and t not in PENDING}
    assert unlisted == {}, "measure these (or list them in PENDING with their command)"
    landed = [t for t in PENDING if (PROJECT_ROOT / t).is_file()]
    assert landed == [], "these files exist now: take them off PENDING"
    for target, where in shown.items():
        if target in PENDING:
            assert {command for _, command in where} == {PENDING[target]}, f"{target}: the page names another command"


def test_every_source_line_names_command_commit_date_and_cpu():
    for page, text in rendered_pages().items():
        assert not ABSOLUTE_PATH.search(text), f"{page}: an absolute path: {ABSOLUTE_PATH.search(text).group()}"
        for target, block in MARKED_BLOCK.findall(text):
            if "Not measured yet" in block:
                continue
            source = next(line for line in block.splitlines() if line.startswith("Source: "))
            assert "unknown" not in source and "?" not in source, f"{page} ({target}): {source}"
            assert re.search(r"; commit [0-9a-f]{7}|; commit not recorded", source), f"{page} ({target}): {source}"
            assert re.search(r"; 20\d\d-\d\d-\d\d", source), f"{page} ({target}): no date in {source}"
            if target not in LEGACY_UNRECORDED:
                assert NOT_RECORDED not in source, f"{page} ({target}): {source}"


def report_table(configs: list[str]) -> ResultTable:
    """A report's table: each config zero-shot and fine-tuned, plus a baseline row."""
    rows = [[c, stage, 3, "0.4 ± 0.01"] for c in configs for stage in ("zero_shot", "fine_tuned")]
    rows.append(["baseline sentence-transformers/all-MiniLM-L6-v2", "baseline", 1, "0.5 (n=1)"])
    return ResultTable("t", ["config", "stage", "n", "clustering_mean"], rows, "cmd")


def test_rows_are_named_by_what_differs():
    names = [row[0] for row in labelled(report_table(["pooling=mean", "pooling=last"])).rows]
    assert names[:2] == ["pooling=mean · zero_shot", "pooling=mean · fine_tuned"]
    assert names[-1] == "all-MiniLM-L6-v2"
    assert [row[0] for row in labelled(report_table(["all runs"])).rows] == [
        "zero_shot",
        "fine_tuned",
        "all-MiniLM-L6-v2",
    ]
    # an override into a package (`group@package=option`) is named by its group
    packaged = labelled(report_table(["data/source@data.sources.only=debtags seed=1", "data/source@data.sources.b=x"]))
    names = [row[0] for row in packaged.rows]
    assert names[:3:2] == ["data/source=debtags seed=1 · zero_shot", "data/source=x · zero_shot"]


def test_numbers_print_at_their_precision():
    table = ResultTable("t", ["what", "minutes", "rss", "v"], [["a", 21.48, 4.1, 0.43141], ["b", 17.1, 4.0, 0.5]], "c")
    assert table.to_markdown(4).splitlines()[2:] == ["| a | 21.48 | 4.1 | 0.4314 |", "| b | 17.10 | 4.0 | 0.5000 |"]


@pytest.mark.parametrize("columns", ["clustering_mean,Task*", "clustering_mean"])
def test_a_plot_legend_never_covers_its_bars(columns):
    from embedexp.analysis.report.result_plot import draw

    table = report_table(["pooling=mean prompt=eol", "pooling=last prompt=none"])
    table.columns.append("TaskA")
    for row in table.rows:
        row.append("0.3 ± 0.02")
    figure = draw(table, {"columns": columns})
    figure.canvas.draw()
    assert legends_clear_of_axes(figure), "legend on the data"


def test_a_bar_plot_leaves_out_rows_without_scores():
    from embedexp.analysis.report.result_plot import draw

    table = report_table(["pooling=mean", "pooling=last"])
    table.columns.append("TaskA")
    for row in table.rows:
        row.append("0.3 ± 0.02")
    table.rows.append(["pooling=failed", "fine_tuned", 1, "", None])  # a failed run: no score anywhere
    labels = draw(table, {"columns": "clustering_mean,TaskA"}).axes[0].get_legend_handles_labels()[1]
    assert len(labels) == 5 and not any("failed" in label for label in labels)


def test_a_line_plot_draws_a_line_per_series_and_column_named_below_the_axes():
    from embedexp.analysis.report.result_plot import draw
    from embedexp.core.result_views import select_rows

    rows = [[m, layer, 0.1 * layer + 0.2, 0.5] for m in ("base", "finetuned") for layer in (0, 1, 2)]
    rows += [["base", "mean", 0.3, 0.5], ["finetuned", "mean", 0.3, 0.5]]
    table = select_rows(ResultTable("t", ["model", "layer", "prompt", "text"], rows, "c"), "layer:[0-9]*")
    figure = draw(table, {"x": "layer", "y": "prompt,text", "series": "model"})
    figure.canvas.draw()
    lines = figure.axes[0].get_legend_handles_labels()[1]
    assert lines == ["base · prompt", "base · text", "finetuned · prompt", "finetuned · text"]
    assert legends_clear_of_axes(figure) and len(figure.legends) == 1
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["0", "1", "2"]  # the mean rows left out
    single = draw(table, {"x": "layer", "y": "prompt", "series": "model"})
    assert single.axes[0].get_legend_handles_labels()[1] == ["base", "finetuned"]


def test_a_line_marker_names_each_row_and_its_source(tmp_path):
    from embedexp.core.results import write_result_table

    (tmp_path / "docs").mkdir()
    write_result_table(
        tmp_path / "results" / "r.json",
        "recipe",
        ["config", "stage", "n", "clustering_mean"],
        report_table(["all runs"]).rows,
        "make recipe",
        source={"git_commit": "abc1234", "date": "2026-12-01", "machine": {"cpu_model": "Test CPU"}},
    )
    page = tmp_path / "docs" / "index.md"
    page.write_text("<!-- line: results/r.json column=clustering_mean -->\n<!-- /line -->\n")
    render.render_all(tmp_path)
    text = page.read_text()
    assert "zero_shot **0.4 ± 0.01** · fine_tuned **0.4 ± 0.01** · all-MiniLM-L6-v2 **0.5 (n=1)**" in text
    assert "Source: `make recipe`; commit abc1234; 2026-12-01" in text


def test_neighbours_whose_intervals_overlap_are_named():
    from embedexp.core.result_views import overlapping_neighbours

    rows = [["mean", "0.43 ± 0.01"], ["last", "0.42 ± 0.01"], ["max", "0.30 ± 0.01"], ["none", "0.1 (n=1)"]]
    table = ResultTable("t", ["run", "clustering_mean"], rows, "c")
    assert overlapping_neighbours(table, "clustering_mean") == [("mean", "last")]


def test_every_docs_plot_keeps_its_legend_off_the_data():
    from embedexp.analysis.report.result_plot import draw
    from embedexp.core.result_views import select_rows
    from embedexp.core.results import read_result_table

    drawn = 0
    for page in render.pages(PROJECT_ROOT):
        for match in render.MARKER.finditer(page.read_text(encoding="utf-8")):
            target, options, _ = render.parse_marker(match.group(3))
            if match.group(2) != "plot" or not (PROJECT_ROOT / target).is_file():
                continue
            figure = draw(select_rows(read_result_table(PROJECT_ROOT / target), options.get("where")), options)
            figure.canvas.draw()
            drawn += 1
            assert legends_clear_of_axes(figure), f"{page.name}: the legend of {target} covers its data"
            assert legends_inside(figure), f"{page.name}: the legend of {target} is cut at the figure's edge"
    assert drawn > 0


def legends_inside(figure) -> bool:
    """Every legend of the figure lies within its width (a wider one loses the start and end of its names)."""
    boxes = [legend.get_window_extent() for legend in figure.legends]
    return all(0 <= box.x0 and box.x1 <= figure.bbox.x1 for box in boxes)


def legends_clear_of_axes(figure) -> bool:
    """No legend of the figure overlaps the plotting area of its first axes."""
    axes = figure.axes[0].get_window_extent()
    for legend in [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend())]:
        box = legend.get_window_extent()
        if not (box.y1 <= axes.y0 or box.y0 >= axes.y1 or box.x1 <= axes.x0 or box.x0 >= axes.x1):
            return False
    return True
