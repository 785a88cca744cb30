"""The matmul peak MFU divides by: timed rounds, kept per machine and only raised, raised again by faster intervals."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from embedexp.core import peak as peak_module
from embedexp.core.peak import CACHED, MEASURED, OBSERVED, PeakKey, matmul_peak, time_rounds
from embedexp.training.throughput import ThroughputMonitor


@pytest.fixture
def fake_rounds(monkeypatch):
    """Set the FLOP/s the next measurement's rounds return (a fresh process: no measurement kept in memory)."""

    def fake(rounds: list[float]) -> None:
        monkeypatch.setattr(peak_module, "_measured", {})
        monkeypatch.setattr(peak_module, "time_rounds", lambda dtype, rounds_=5: list(rounds))

    return fake


def test_rounds_time_a_real_matmul():
    rates = time_rounds(torch.float32, rounds=3, shapes=((64, 32, 48),))
    assert len(rates) == 3 and all(rate > 0 for rate in rates)


def test_the_cached_peak_is_per_machine_and_only_ever_raised(tmp_path, fake_rounds):
    fake_rounds([2e9, 4e9, 3e9])
    first = matmul_peak(torch.float32, tmp_path)
    assert (first.flops, first.source, first.cached) == (4e9, MEASURED, 0.0)
    assert first.spread == pytest.approx(0.5)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and json.loads(files[0].read_text())["flops"] == 4e9

    fake_rounds([1e9, 1.5e9])  # a busy machine: the best ever seen on this CPU stays the peak
    busy = matmul_peak(torch.float32, tmp_path)
    assert (busy.flops, busy.source, busy.cached, busy.measured) == (4e9, CACHED, 4e9, 1.5e9)
    assert json.loads(files[0].read_text())["flops"] == 4e9

    fake_rounds([5e9])  # a quieter moment raises it
    assert matmul_peak(torch.float32, tmp_path).source == MEASURED
    assert json.loads(files[0].read_text())["flops"] == 5e9

    fake_rounds([1e9])  # another dtype or thread count is another machine
    assert matmul_peak(torch.bfloat16, tmp_path).flops == 1e9
    other = PeakKey.here(torch.float32, threads=torch.get_num_threads() + 1)
    assert peak_module.read_cached(tmp_path, other) == 0.0
    assert len(list(tmp_path.iterdir())) == 2


def test_a_faster_interval_raises_the_peak(tmp_path, fake_rounds):
    fake_rounds([1e9])
    peak = matmul_peak(torch.float32, None)
    assert peak.raised_to(0.5e9) is peak
    raised = peak.raised_to(3e9)
    assert (raised.flops, raised.source, raised.utilization(3e9)) == (3e9, OBSERVED, 1.0)
    assert raised.record()["raised"] == 3.0 and peak.flops == 1e9  # the process's peak is not changed


@pytest.mark.parametrize(
    ("hits", "misses", "share"),
    [
        (0, 8, 0.0),  # first epoch
        (8, 8, 0.0),  # first epoch under GradCache (its second pass reuses the first's), or the cache's self-check
        (8, 0, 1.0),  # a later epoch
        (16, 0, 1.0),  # a later epoch under GradCache
        (6, 2, 0.75),  # some texts seen before
        (0, 16, 0.0),  # texts beyond the cache's memory bound, computed in both GradCache passes
    ],
)
def test_cached_share_counts_texts_an_earlier_step_computed(hits, misses, share):
    monitor = ThroughputMonitor()
    monitor.lengths = [10] * 8
    monitor.cache_counts = (100, 50)
    embedder = SimpleNamespace(prefix_cache=SimpleNamespace(hits=100 + hits, misses=50 + misses))
    assert monitor.cached_share(embedder) == share
