"""Precision `auto`, CPU threads and progress: decided from the machine, recorded with every run."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from embedexp.core import hardware
from embedexp.core.errors import ConfigError
from embedexp.core.hardware import PrecisionProbe, resolve_config_precisions, resolve_precision
from embedexp.core.progress import Progress

from .conftest import compose_config

SLOW_BF16 = PrecisionProbe(fp32_s=0.01, bf16_s=0.68, threads=2)  # an AVX2-only CPU: bf16 emulated, 68x slower
FAST_BF16 = PrecisionProbe(fp32_s=0.006, bf16_s=0.002, threads=2)  # AVX512-BF16 / AMX: 3x faster


@pytest.fixture
def probe(monkeypatch):
    """Inject the probe's timings (not the hardware): returns a setter."""

    def use(result: PrecisionProbe) -> None:
        monkeypatch.setattr(hardware, "_probe", result)
        monkeypatch.setattr(hardware, "run_probe", lambda: pytest.fail("the probe must not run again"))

    monkeypatch.setenv(hardware.PROBE_ENV, "")  # recorded: whatever a test's probe writes there is undone
    monkeypatch.delenv(hardware.PROBE_ENV)
    return use


def test_auto_is_fp32_where_the_probe_says_bf16_is_slower(probe, tmp_path):
    probe(SLOW_BF16)
    cfg = compose_config("train", ["trainer=cpu"], tmp_path)
    assert cfg.trainer.precision == "auto" and cfg.eval.precision == "auto"
    assert resolve_config_precisions(cfg) == {"train": "32-true", "eval": "32"}
    assert cfg.trainer.precision == "32-true" and cfg.eval.precision == "32"


def test_auto_is_bf16_where_the_probe_says_bf16_is_faster(probe, tmp_path):
    probe(FAST_BF16)
    cfg = compose_config("train", ["trainer=cpu"], tmp_path)
    assert resolve_config_precisions(cfg) == {"train": "bf16-mixed", "eval": "bf16"}
    assert resolve_precision("auto", "generator.model.autocast") == "bf16"


def test_a_marginal_bf16_gain_stays_fp32(probe):
    probe(PrecisionProbe(fp32_s=0.0105, bf16_s=0.01, threads=2))  # 5 % faster: not worth bf16 rounding
    assert resolve_precision("auto", "eval.precision") == "32"


@pytest.mark.parametrize(
    ("value", "trainer", "autocast"),
    [(32, "32-true", "32"), ("32", "32-true", "32"), ("fp32", "32-true", "32"), ("32-true", "32-true", "32"),
     ("bf16", "bf16-mixed", "bf16"), ("bf16-mixed", "bf16-mixed", "bf16"), ("BF16", "bf16-mixed", "bf16")],
)  # fmt: skip
def test_explicit_precisions_int_or_string(value, trainer, autocast, probe):
    probe(SLOW_BF16)
    assert resolve_precision(value, "trainer.precision", "trainer") == trainer
    assert resolve_precision(value, "eval.precision", "autocast") == autocast


def test_a_wrong_precision_names_its_key(probe, tmp_path):
    cfg = compose_config("train", ["trainer=cpu", "eval.precision=bf61"], tmp_path)
    with pytest.raises(ConfigError, match=r"eval\.precision='bf61'.*auto"):
        resolve_config_precisions(cfg)
    with pytest.raises(ConfigError, match=r"trainer\.precision=17"):
        resolve_precision(17, "trainer.precision", "trainer")


def test_the_probe_runs_once_and_child_processes_inherit_it(monkeypatch):
    monkeypatch.setattr(hardware, "_probe", None)
    monkeypatch.setenv(hardware.PROBE_ENV, "")  # recorded by monkeypatch, so the fake timings written below go too
    monkeypatch.delenv(hardware.PROBE_ENV)
    calls = []
    monkeypatch.setattr(hardware, "run_probe", lambda: calls.append(1) or FAST_BF16)
    assert hardware.cpu_probe() is hardware.cpu_probe()
    assert calls == [1]
    inherited = json.loads(hardware.os.environ[hardware.PROBE_ENV])
    assert inherited["bf16_s"] == FAST_BF16.bf16_s
    monkeypatch.setattr(hardware, "_probe", None)  # a child process: same environment, no probe of its own
    assert hardware.cpu_probe() == FAST_BF16 and calls == [1]


def test_real_probe_times_both_precisions():
    result = hardware.run_probe()
    assert result.fp32_s > 0 and result.bf16_s > 0
    assert result.as_dict()["bf16_speedup"] == pytest.approx(result.fp32_s / result.bf16_s, rel=1e-2)


@pytest.mark.parametrize(
    ("files", "expected"),
    [({"cpu.max": "150000 100000\n"}, 1.5), ({"cpu.max": "max 100000\n"}, None),
     ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),
     ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None), ({}, None)],
)  # fmt: skip
def test_cgroup_cpu_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert hardware.cgroup_cpu_limit(tmp_path) == expected


def test_threads_follow_affinity_and_the_cgroup_quota(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 16 if logical else 8)  # SMT: 2 threads a core
    assert hardware.available_cores(tmp_path) == 4  # 8 allowed logical CPUs = 4 physical cores
    (tmp_path / "cpu.max").write_text("250000 100000")
    assert hardware.available_cores(tmp_path) == 2  # quota of 2.5 CPUs


def test_configure_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert hardware.configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(hardware, "available_cores", lambda: 2)
        assert hardware.configure_threads("auto") == 2 and torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="num_threads='many'"):
            hardware.configure_threads("many")
        with pytest.raises(ConfigError, match="num_threads=0"):
            hardware.configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_machine_info_records_cpu_threads_and_precisions(probe):
    probe(SLOW_BF16)
    info = hardware.machine_info(train="32-true", eval="32")
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["threads"] == torch.get_num_threads() and info["cpu_model"]
    assert info["precision"] == {"train": "32-true", "eval": "32"}
    assert info["precision_probe"]["bf16_speedup"] == pytest.approx(SLOW_BF16.speedup, abs=1e-4)


class FakeClock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_logs_a_line_every_interval(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="embedexp.core.progress")
    with Progress(300, "embed StackOverflowTitlesClustering", "texts", mode="log", interval_s=30, clock=clock) as p:
        for _ in range(6):
            clock.now += 10
            p.update(20)  # 2 texts/s
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == [
        "embed StackOverflowTitlesClustering: 60/300 texts (2.0 texts/s, ETA 2:00)",
        "embed StackOverflowTitlesClustering: 120/300 texts (2.0 texts/s, ETA 1:30)",
    ]
    assert lines[2] == "embed StackOverflowTitlesClustering: 120 texts in 1:00"


def test_progress_counts_from_a_resumed_position_and_stays_quiet_when_off(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="embedexp.core.progress")
    p = Progress(2000, "synth paraphrase", "pairs", initial=1000, mode="log", interval_s=30, clock=clock)
    clock.now = 40
    p.update(100)
    assert caplog.records[-1].getMessage().startswith("synth paraphrase: 1100/2000 pairs (2.5 pairs/s, ETA 6:00)")
    caplog.clear()
    quiet = Progress(10, "x", mode="off", clock=clock)
    clock.now += 100
    quiet.update(5)
    quiet.close()
    assert not caplog.records


def test_train_with_int_precisions_from_the_command_line(tmp_path, monkeypatch, caplog):
    """`trainer.precision=32 eval.precision=32` arrive as ints (as from the CLI) and train end to end; off a terminal
    training and evaluation write progress lines."""
    from embedexp.cli.train import train

    monkeypatch.setenv("EMBEDEXP_PROGRESS", "log")
    monkeypatch.setattr("embedexp.core.progress.LOG_INTERVAL_S", 0.0)  # evaluation's Progress default: a line per batch
    caplog.set_level(logging.INFO, logger="embedexp.core.progress")

    cfg = compose_config(
        "train",
        ["model=tiny", "tasks=tiny", "logger=csv", "trainer=cpu", "trainer.precision=32", "eval.precision=32",
         "data.batch_size=8", "data.source.max_pairs=32", "data.source.text_field=short",
         "callbacks.progress_log.interval_s=0"],
        tmp_path,
    )  # fmt: skip
    assert cfg.trainer.precision == 32 and cfg.eval.precision == 32
    metrics = train(cfg)
    machine = metrics["provenance"]["machine"]
    assert machine["precision"] == {"train": "32-true", "eval": "32"}
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    saved = json.loads((tmp_path / "provenance.json").read_text())
    assert saved["machine"]["precision"] == {"train": "32-true", "eval": "32"}
    cache_files = list((tmp_path / "zero_shot_cache").glob("*.json"))
    assert cache_files, "the zero-shot score cache key must accept the precision"
    assert cfg.trainer.precision == 32  # resolved on a copy: the caller's config is left as composed
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("train: 4/4 steps (") for line in lines), lines
    assert any(line.startswith("embed DebianShortDescSectionClustering: ") for line in lines), lines
