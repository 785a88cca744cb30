"""The built site in a real browser (headless Chromium, Debian's `chromium`): at 1280 px no table or plot is wider
than the content column, so nothing needs a sideways scroll. Legends are checked on every plot the docs draw
(`test_docs_site`), as a browser cannot see inside a PNG."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embedexp.core.config import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DESKTOP_WIDTH = 1280
MEASURED = re.compile(r'<pre id="embedexp-measure">(.*?)</pre>', re.S)
# appended to a built page: the content column's width and each table's and image's, as JSON in a <pre>
MEASURE_SCRIPT = """<script>
window.addEventListener('load', () => {
  const column = document.querySelector('article.md-content__inner');
  const wide = (el) => ({what: (el.alt || el.innerText || '').slice(0, 80), width: el.scrollWidth});
  const out = document.createElement('pre');
  out.id = 'embedexp-measure';
  out.textContent = JSON.stringify({column: column.clientWidth,
    tables: [...column.querySelectorAll('table')].map(wide), images: [...column.querySelectorAll('img')].map(wide)});
  document.body.appendChild(out);
});
</script>"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)"),
]


def build_site(out: Path) -> Path:
    """`mkdocs build --strict` of this checkout into `out`."""
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run(mkdocs, cwd=PROJECT_ROOT, env=environment, check=True, capture_output=True, timeout=600)
    return out


def measure(page: Path, width: int) -> dict:
    """The widths (CSS px) of a built page's content column, tables and images in a `width`-px window."""
    probe = page.with_name("measure.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE_SCRIPT + "</body>"), encoding="utf-8")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--window-size={width},900",
        "--virtual-time-budget=3000",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: web fonts fail at once instead of stalling the load
        "--dump-dom",
        probe.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    found = MEASURED.search(dom)
    assert found, f"{page}: the measuring script did not run"
    return json.loads(
        found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )


def too_wide(site: Path, page: str, width: int = DESKTOP_WIDTH) -> list[str]:
    """Each table or image of `page` (a built page's folder, "" for home) wider than the content column."""
    sizes = measure(site / page / "index.html", width)
    return [
        f"{page or 'home'}: {kind[:-1]} {item['width']} px > column {sizes['column']} px: {item['what']!r}"
        for kind in ("tables", "images")
        for item in sizes[kind]
        if item["width"] > sizes["column"] + 1
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it."""
    return build_site(tmp_path_factory.mktemp("site"))


def result_pages() -> list[str]:
    """Every page of docs/ that renders a result file (by its built folder name)."""
    marked = [p for p in (PROJECT_ROOT / "docs").glob("*.md") if "<!-- result:" in p.read_text(encoding="utf-8")]
    return ["" if p.stem == "index" else p.stem for p in sorted(marked)] + [""]


@pytest.mark.parametrize("page", sorted(set(result_pages())))
def test_no_table_or_plot_is_wider_than_the_column_at_1280_px(site, page):
    assert too_wide(site, page) == []
