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
# the checkout's cache, as `make test` sets it: the model caches (dequantized GGUF, tokenizer, Debian corpus) are
# shared with `make run`; score caches are not (`no_environ_leaks` below gives each test its own)
os.environ.setdefault("EMBEDEXP_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "embedexp"))
# the variables a test may set and must put back: embedexp's own and those of the tools it configures. Others are
# process state that libraries set on first use (KMP_*, TORCHINDUCTOR_CACHE_DIR, PL_GLOBAL_SEED...): left alone
WATCHED_ENV = ("EMBEDEXP_", "WANDB_", "HF_", "TRANSFORMERS_", "HYDRA_", "TOKENIZERS_", "CUDA_VISIBLE", "OMP_", "MKL_")
LIBRARY_ENV = {"WANDB_QUIET", "WANDB_SERVICE"}  # set by wandb / embedexp's quiet console for the whole process

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
        throughput = (cfg.get("callbacks") or {}).get("throughput")
        if throughput and throughput.get("peak_cache_dir"):  # hermetic: a faked peak never reaches the project's cache
            throughput.peak_cache_dir = str(Path(output_dir) / "matmul_peak")
    return cfg


def command_config(name: str, overrides: list[str], output_dir):
    """A command's config as Hydra composes it, with the command line's overrides in its Hydra node (what
    `open_model` reads to tell asked values from the command's defaults)."""
    cfg = compose_config(name, overrides, output_dir)
    with open_dict(cfg):
        cfg.hydra = {"overrides": {"task": list(overrides)}}
    return cfg


@pytest.fixture(scope="session", autouse=True)
def real_precision_probe() -> None:
    """Probe the CPU once (0.2 s) before any test: its result in os.environ is then part of every test's snapshot, so a
    test that leaves fake timings there fails `no_environ_leaks`."""
    from embedexp.core.hardware import cpu_probe

    cpu_probe()


def watched_env() -> dict[str, str]:
    """The WATCHED_ENV variables of this process."""
    return {k: v for k, v in os.environ.items() if k.startswith(WATCHED_ENV) and k not in LIBRARY_ENV}


@pytest.fixture(autouse=True)
def no_environ_leaks(request, real_precision_probe, tmp_path_factory):
    """Fail a test that leaves a WATCHED_ENV variable changed (use monkeypatch.setenv); they are restored either way.

    Also gives the test its own zero-shot score cache and frozen-prefix store (`$EMBEDEXP_SCORE_CACHE_DIR`,
    `$EMBEDEXP_PREFIX_STORE_DIR`, read by in-process configs and subprocesses alike), never `make run`'s. Uses no
    monkeypatch itself, so a test's monkeypatch is undone first.
    """
    before = watched_env()
    os.environ["EMBEDEXP_SCORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("score_cache"))
    os.environ["EMBEDEXP_PREFIX_STORE_DIR"] = str(tmp_path_factory.mktemp("prefix_store"))
    inside = watched_env()
    yield
    after = watched_env()
    for key in after.keys() - before.keys():
        del os.environ[key]
    os.environ.update(before)
    leaked = sorted(k for k in inside.keys() | after.keys() if inside.get(k) != after.get(k))
    if leaked:
        pytest.fail(f"{request.node.nodeid} changed os.environ: {leaked} (use monkeypatch.setenv / delenv)")


def backbone_state(backbone) -> tuple:
    """What a test could change in the shared tiny llama: attention, train mode, modules, weights."""
    from embedexp.core.compat import attn_implementation

    model = backbone.model
    weights = tuple(round(float(p.double().sum()), 6) for p in model.parameters())
    return attn_implementation(model), model.training, len(list(model.modules())), weights


@pytest.fixture(autouse=True)
def tiny_backbone_unchanged(request):
    """Fail a test that leaves the session's `tiny_backbone` changed (restore it, or build a model of its own)."""
    if "tiny_backbone" not in request.fixturenames:
        yield
        return
    backbone = request.getfixturevalue("tiny_backbone")
    before = backbone_state(backbone)
    yield
    if backbone_state(backbone) != before:
        pytest.fail(f"{request.node.nodeid} changed the shared tiny_backbone (attention, mode, modules or weights)")


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
    row = ["make test", *counts, round(minutes, 2), round(peaks[0], 1), round(peaks[1], 1)]
    write_result_table(
        target, "make test", columns, [row], "make measure-test", notes="after install; children: subprocess tests"
    )
