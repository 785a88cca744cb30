"""Run a documentation page exactly as written: its fenced code blocks, in order, in a fresh folder.

The rules, independent of what a page says (docs/tests.md repeats them for page authors):
- a block with a `title="<path>"` attribute is a file: written to `<path>` below the folder;
- a `bash` block without a title is run by bash (`set -euo pipefail`) in the folder;
- a `python` block without a title is run by the test interpreter as a script in the folder;
- every other block (`text`, `yaml`, `console`, ... without a title) is shown, not run.
`section=` restricts a page to the part between `--8<-- [start:<section>]` and `--8<-- [end:<section>]` (the
pymdownx.snippets section markers the docs site includes such parts with).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[\w+-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')
RUN = {"bash": ["bash", "-euo", "pipefail", "-c"], "python": [sys.executable, "-c"]}


@dataclass
class Block:
    """One fenced code block of a page."""

    lang: str
    title: str | None
    body: str
    line: int  # where it starts on the page (1-based), for error messages


def section(text: str, name: str) -> str:
    """The part of a page between the snippet section markers `name`."""
    start, end = f"--8<-- [start:{name}]", f"--8<-- [end:{name}]"
    if start not in text or end not in text:
        raise ValueError(f"no section {name!r} (markers {start} / {end})")
    return text.split(start, 1)[1].split(end, 1)[0]


def code_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    blocks = []
    for found in FENCE.finditer(text):
        title = TITLE.search(found.group("info"))
        line = text.count("\n", 0, found.start()) + 1
        blocks.append(Block(found.group("lang"), title.group(1) if title else None, found.group("body"), line))
    return blocks


def run_page(
    page: Path, folder: Path, env: dict[str, str], name: str | None = None, timeout: int = 900
) -> list[subprocess.CompletedProcess]:
    """Write the page's files and run its commands in `folder`; returns each command's finished process. A failing
    command raises AssertionError naming the page, the block's line and the output."""
    text = page.read_text(encoding="utf-8")
    blocks = code_blocks(section(text, name) if name else text)
    if name:  # line numbers of a section count from the page's start
        offset = text[: text.index(f"--8<-- [start:{name}]")].count("\n")
        for block in blocks:
            block.line += offset
    outputs = []
    for block in blocks:
        if block.title:
            path = folder / block.title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body, encoding="utf-8")
        elif block.lang in RUN:
            done = subprocess.run(
                [*RUN[block.lang], block.body], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"{page.name}:{block.line}: exit code {done.returncode}\n{output[-4000:]}"
            outputs.append(done)
    return outputs


def page_environment(cache_from: Path, cache_to: Path) -> dict[str, str]:
    """The test environment for a page: the test interpreter's `python` and `embedexp` first on PATH, this checkout's
    code, and a cache folder of its own that shares only the read-only model and Debian files of `cache_from`."""
    cache_to.mkdir(parents=True, exist_ok=True)
    for shared in ("gguf", "debian"):
        if (cache_from / shared).is_dir() and not (cache_to / shared).exists():
            (cache_to / shared).symlink_to(cache_from / shared, target_is_directory=True)
    src = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, EMBEDEXP_CACHE_DIR=str(cache_to), PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(src), env.get("PYTHONPATH", "")] if p)
    return env
