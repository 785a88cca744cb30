"""Shared fixtures: offline environment, composed configs, a tiny random llama."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
_WANDB_TMP = tempfile.mkdtemp(prefix="embedexp-wandb-")
for _key in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_DIR"):
    os.environ.setdefault(_key, _WANDB_TMP)
# the checkout's cache, as `make test` sets it: composed configs and the fixtures below then share one cache
os.environ.setdefault("EMBEDEXP_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "embedexp"))

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from embedexp.core.config import CONFIG_DIR  # noqa: E402

TINY_OVERRIDES = ["model=tiny", "tasks=tiny", "logger=csv", "trainer.precision=32-true"]


def compose_config(name: str, overrides: list[str], output_dir) -> DictConfig:
    """Compose a real config from conf/ with overrides and point its output folder at `output_dir`."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        evaluator = (cfg.get("callbacks") or {}).get("clustering_eval")
        if evaluator and evaluator.get("zero_shot_cache_dir"):  # hermetic: never the project-wide score cache
            evaluator.zero_shot_cache_dir = str(Path(output_dir) / "zero_shot_cache")
    return cfg


@pytest.fixture
def tiny_train_cfg(tmp_path) -> DictConfig:
    """Training config on the tiny model, tiny tasks and 64 Debian pairs, writing into tmp_path."""
    overrides = TINY_OVERRIDES + [
        "data.batch_size=8",
        "data.source.max_pairs=64",
        "data.source.text_field=short",
        "optimizer.lr=1e-3",
    ]
    return compose_config("train", overrides, tmp_path)


@pytest.fixture(scope="session")
def tiny_backbone():
    """The tiny random llama (seeded) with the SmolLM2 tokenizer."""
    from embedexp.core.config import PROJECT_ROOT
    from embedexp.model.backbone import build_tiny_llama

    return build_tiny_llama(cache_dir=str(PROJECT_ROOT / ".cache" / "embedexp"))


@pytest.fixture(scope="session")
def mean_export(tmp_path_factory):
    """A tiny run (mean pooling, eol prompt, random non-zero LoRA) exported in all three forms: (run, results, dir)."""
    from .export_helpers import export, make_run

    root = tmp_path_factory.mktemp("mean")
    run = make_run(root / "run", ["pooling=mean", "prompt=eol"])
    return run, export(run, root / "export"), root / "export"


_SESSION_START: list[float] = []


def pytest_sessionstart(session) -> None:
    """Remember when the test session started (for `make measure-test`)."""
    import time

    _SESSION_START.append(time.perf_counter())


def pytest_sessionfinish(session, exitstatus) -> None:
    """With EMBEDEXP_TEST_RESULT=<file> (`make measure-test`): what the run cost as a result file for the README."""
    target = os.environ.get("EMBEDEXP_TEST_RESULT")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not target or reporter is None or not _SESSION_START:
        return
    import resource
    import time

    from embedexp.core.results import write_result_table

    counts = [len(reporter.stats.get(outcome, [])) for outcome in ("passed", "failed", "skipped")]
    minutes = (time.perf_counter() - _SESSION_START[0]) / 60
    peaks = [resource.getrusage(who).ru_maxrss / 1024**2 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    columns = [
        "command",
        "passed",
        "failed",
        "skipped",
        "minutes",
        "peak RSS, test process (GB)",
        "peak RSS, a child (GB)",
    ]
    row = ["make test", *counts, round(minutes, 1), round(peaks[0], 1), round(peaks[1], 1)]
    write_result_table(
        target, "make test", columns, [row], "make measure-test", notes="after install; children: subprocess tests"
    )
