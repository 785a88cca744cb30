"""Figures come from files: every marked table and plot of README.md and docs/ equals what its result file renders."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from embedexp.core.config import PROJECT_ROOT
from embedexp.core.results import write_result_table

README_LIMIT_BYTES = 12 * 1024


def load_render():
    """docs/render.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("docs_render", PROJECT_ROOT / "docs" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render()


def test_every_page_matches_its_result_files():
    problems = render.stale(PROJECT_ROOT)
    assert problems == [], "run `make docs` (docs/render.py) and commit the pages:\n" + "\n".join(problems)


def test_readme_fits_on_a_screen_and_links_into_the_docs():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= README_LIMIT_BYTES
    for page in ("getting-started", "configuration", "results", "performance", "reliability", "tests"):
        assert f"(docs/{page}.md)" in readme


def test_readme_names_every_lever_of_conf_lever():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").lower()
    levers = [p.stem for p in (PROJECT_ROOT / "conf" / "lever").glob("*.yaml") if p.stem != "none"]
    assert levers and [lever for lever in levers if lever not in readme] == []


@pytest.fixture
def project(tmp_path):
    """A repository in miniature: a result file, a page marking its table and plot, rendered once."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# nothing marked\n")
    write_result_table(
        tmp_path / "results" / "speed.json",
        "speed",
        ["config", "stage", "n", "TaskA", "clustering_mean"],
        [["a", "fine_tuned", 3, "0.5000 ± 0.0100", "0.4000 ± 0.0200"], ["b", "zero_shot", 1, "0.3 (n=1)", "0.2 (n=1)"]],
        "python -m embedexp report outputs/x result_file=results/speed.json",
        source={"git_commit": "abc123", "date": "2026-12-01", "machine": {"cpu_model": "Test CPU"}},
    )
    page = tmp_path / "docs" / "speed.md"
    page.write_text(
        "# Speed\n\n<!-- result: results/speed.json -->\n<!-- /result -->\n\n"
        "<!-- plot: results/speed.json -->\n<!-- /plot -->\n\n"
        '<!-- result: results/later.json pending="make later" -->\nstale text\n<!-- /result -->\n'
    )
    assert render.render_all(tmp_path) == [page]
    return tmp_path, page


def test_rendered_page_holds_table_source_plot_and_pending_note(project):
    root, page = project
    text = page.read_text()
    assert "| a · fine_tuned | 3 | 0.5000 ± 0.0100 | 0.4000 ± 0.0200 |" in text
    assert "Source: `python -m embedexp report outputs/x result_file=results/speed.json`; commit abc123" in text
    assert "![speed](img/speed.png)" in text and (root / "docs" / "img" / "speed.png").is_file()
    assert "`make later` writes it" in text and "stale text" not in text
    assert render.stale(root) == []


def test_editing_a_result_file_makes_its_page_and_plot_stale(project):
    root, page = project
    path = root / "results" / "speed.json"
    data = json.loads(path.read_text())
    data["rows"][0][3] = "0.6000 ± 0.0100"
    path.write_text(json.dumps(data))
    assert render.stale(root) == [
        "docs/speed.md: a table or plot differs from its result file",
        "docs/img/speed.png: not drawn from the current results/speed.json",
    ]
    render.render_all(root)
    assert "0.6000 ± 0.0100" in page.read_text() and render.stale(root) == []


def test_a_new_result_file_replaces_its_pending_note(project):
    root, page = project
    shutil.copy(root / "results" / "speed.json", root / "results" / "later.json")
    assert render.stale(root) == ["docs/speed.md: a table or plot differs from its result file"]


def test_transposed_table_and_line_plot(project):
    root, page = project
    page.write_text(
        "<!-- result: results/speed.json transpose labels=stage where=stage:fine_* hide=config -->\n<!-- /result -->\n"
        "<!-- plot: results/speed.json name=line x=config y=n -->\n<!-- /plot -->\n"
    )
    render.render_all(root)
    text = page.read_text()
    assert "|  | fine_tuned |" in text and "| TaskA | 0.5000 ± 0.0100 |" in text and "zero_shot" not in text
    assert "| config |" not in text
    assert (root / "docs" / "img" / "line.png").is_file() and render.stale(root) == []


def test_config_groups_come_from_the_yaml_comments(project):
    root, page = project
    page.write_text("<!-- config-groups: train -->\n<!-- /config-groups -->\n")
    render.render_all(root)
    first_line = (PROJECT_ROOT / "conf" / "pooling" / "mean.yaml").read_text().splitlines()[0].lstrip("# ")
    assert f"| `pooling` | `mean` (default) | {first_line} |" in page.read_text()


def test_where_keeps_the_rows_matching_any_of_its_globs():
    from embedexp.core.result_views import select_rows
    from embedexp.core.results import ResultTable

    table = ResultTable("t", ["step", "x"], [["search_data", 1], ["search_loss", 2], ["baseline", 3]], "cmd")
    assert [r[1] for r in select_rows(table, "step:search_*").rows] == [1, 2]
    assert [r[1] for r in select_rows(table, "step:search_data|baseline").rows] == [1, 3]
