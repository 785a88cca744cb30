"""A quiet console: third-party noise filtered at the entry points, EMBEDEXP_VERBOSE=1 shows it, `--help` lists the
config groups, a failed download is one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from embedexp.core.config import CONFIG_DIR, PROJECT_ROOT
from embedexp.core.console import NOISE

# a third-party message of each mechanism the console filters: warnings, a Lightning logger, W&B's termwarn
EMIT_NOISE = """
import logging, warnings
from embedexp.core.console import quiet_console
quiet_console()
warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
logging.basicConfig(format="%(name)s: %(message)s")
logging.getLogger("lightning.fabric.utilities.seed").warning("Seed set to 42")
import wandb
wandb.termwarn("The anonymous setting has no effect and will be removed in a future version.", repeat=False)
warnings.warn("a warning nobody listed", UserWarning)
logging.getLogger("lightning.fabric.utilities.seed").warning("a Lightning warning nobody listed")
"""


def python(*args: str, cwd=None, **env: str) -> subprocess.CompletedProcess:
    """Run the test interpreter with the test environment plus `env` (W&B's own output not silenced)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("WANDB_SILENT", "EMBEDEXP_VERBOSE")}
    environment.update(env, PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT_ROOT / "src"))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd or PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=600
    )


def test_listed_noise_is_filtered_and_verbose_shows_it():
    quiet = python("-c", EMIT_NOISE)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    for listed in ("is_gradient_checkpointing", "Seed set to 42", "anonymous setting"):
        assert listed not in quiet.stderr
    assert "a warning nobody listed" in quiet.stderr and "a Lightning warning nobody listed" in quiet.stderr
    verbose = python("-c", EMIT_NOISE, EMBEDEXP_VERBOSE="1")
    for listed in ("is_gradient_checkpointing", "Seed set to 42", "anonymous setting"):
        assert listed in verbose.stderr


def third_party_lines(output: str) -> list[str]:
    """Lines that are neither embedexp's (its log lines, the result table) nor W&B's note of where the run went."""
    own = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[embedexp\.")
    table = re.compile(r"^\s*(Clustering V-measure|[┏┃┡│└])")
    wandb_note = re.compile(r"^wandb: (?!WARNING)")
    return [
        line
        for line in output.splitlines()
        if line.strip() and not (own.match(line) or table.match(line) or wandb_note.match(line))
    ]


@pytest.mark.slow  # two smoke trainings in subprocesses
def test_smoke_run_prints_no_third_party_warning_line(tmp_path):
    args = [
        "-m",
        "embedexp",
        "train",
        "experiment=smoke",
        "logger=wandb",  # W&B's anonymous-setting warning comes with its logger
        f"callbacks.clustering_eval.zero_shot_cache_dir={tmp_path / 'zero_shot'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    quiet = python(*args, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    output = quiet.stdout + quiet.stderr
    assert "clustering_mean" in output  # the result is still printed
    assert third_party_lines(output) == []
    verbose = python(*args[:-1], f"hydra.run.dir={tmp_path / 'verbose'}", cwd=tmp_path, EMBEDEXP_VERBOSE="1")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    shown = third_party_lines(verbose.stdout + verbose.stderr)
    assert any(noise.message in line for noise in NOISE for line in shown), shown


def test_command_help_lists_groups_and_options_from_the_yaml_files():
    result = python("-m", "embedexp", "train", "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "  pooling=" in lines and "  experiment=  (none by default)" in lines
    first_comment = (CONFIG_DIR / "pooling" / "mean.yaml").read_text().splitlines()[0].lstrip("# ")
    assert any(re.match(rf"\s+\* mean\s+{re.escape(first_comment)}", line) for line in lines), lines
    assert any(re.match(r"\s+ smoke\s+\S", line) for line in lines)  # every option has a description
    assert any(re.match(r"\s+seed\s+= 42$", line) for line in lines)  # the command's own keys
    overview = python("-m", "embedexp", "--help")
    assert overview.returncode == 0
    assert "[model_source, model, pooling, prompt, tasks]" in overview.stdout  # eval's groups
    report = python("-m", "embedexp", "report", "--help")  # no groups to choose: its keys and their comments
    assert re.search(r"^\s+result_file\s+also write the table as a result file", report.stdout, re.M), report.stdout


def test_failed_download_is_one_line_naming_url_reason_and_way_out(tmp_path):
    script = (
        "import embedexp.data.fetch_shared as f\n"
        "f.TEXT_GCN_ARCHIVE = 'http://127.0.0.1:9/text_gcn.tar.gz'  # nothing listens there\n"
        "from embedexp.cli.fetch_shared import main\n"
        f"main(['--out', {str(tmp_path / 'out')!r}])\n"
    )
    result = python("-c", script)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error", "Traceback"))]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "http://127.0.0.1:9/text_gcn.tar.gz" in errors[0] and "refused" in errors[0].lower()
    assert "tasks=offline_debian" in errors[0] and "--source-dir" in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
