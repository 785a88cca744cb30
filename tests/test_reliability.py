"""Interruption and determinism: a killed run resumes to the same result; the same seed gives the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import load_file

from embedexp.cli.train import train
from embedexp.core.config import PROJECT_ROOT
from embedexp.model.build import build_embedder
from embedexp.training.checkpointing import resolve_ckpt_path

from .conftest import compose_config
from .helpers import CountSteps

RUN = [
    "model=tiny",
    "tasks=tiny",
    "logger=csv",
    "trainer.precision=32-true",
    "trainer.max_epochs=2",
    "data.batch_size=8",
    "data.source.max_pairs=96",
    "data.source.text_field=short",
    "model.lora.dropout=0.1",
    "optimizer.lr=1e-3",
    "callbacks.step_checkpoint.every_n_train_steps=5",
    "callbacks.clustering_eval.at_start=false",
]
FINAL_KEYS = ("val/clustering_mean", "val/DebianShortDescSectionClustering", "train/loss")


def adapter_weights(folder) -> dict[str, torch.Tensor]:
    """The saved LoRA tensors of a run."""
    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its metrics and adapter."""
    folder = tmp_path_factory.mktemp("reference")
    metrics = train(compose_config("train", RUN, folder))
    return metrics, adapter_weights(folder)


@pytest.mark.slow  # a training subprocess
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_to_the_same_result(reference, tmp_path, signal_name):
    run_dir = tmp_path / "run"
    kill = [
        "+callbacks.kill._target_=tests.helpers.KillAtStep",
        "+callbacks.kill.step=17",
        f"+callbacks.kill.signal_name={signal_name}",
    ]
    killed = subprocess.run(
        [sys.executable, "-m", "embedexp.cli.train", *RUN, *kill, f"hydra.run.dir={run_dir}"],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == (-9 if signal_name == "SIGKILL" else 143), killed.stderr[-3000:]
    saved = "last.ckpt" if signal_name == "SIGKILL" else "on_exception.ckpt"
    checkpoint = torch.load(run_dir / "checkpoints" / saved, weights_only=True)
    entry = 15 if signal_name == "SIGKILL" else 17  # mid-epoch 2 (steps 13..24)
    assert checkpoint["global_step"] == entry
    assert not (run_dir / "metrics.json").exists()

    cfg = compose_config(
        "train", RUN + ["ckpt_path=last", "+callbacks.count._target_=tests.helpers.CountSteps"], run_dir
    )
    resumed = train(cfg)
    # the resumed process started at the checkpoint's step and ran only the remaining ones (24 in all)
    assert (CountSteps.last.entry_step, CountSteps.last.steps) == (entry, 24 - entry)
    expected_metrics, expected_weights = reference
    for key in FINAL_KEYS:
        assert resumed[key] == pytest.approx(expected_metrics[key], abs=1e-6), key
    weights = adapter_weights(run_dir)
    assert weights.keys() == expected_weights.keys()
    for name, tensor in weights.items():
        assert torch.allclose(tensor, expected_weights[name], atol=1e-6), name
    assert json.loads((run_dir / "metrics.json").read_text())["val/clustering_mean"] == resumed["val/clustering_mean"]


def test_ckpt_path_last_picks_the_newer_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    cfg = compose_config("train", RUN + ["ckpt_path=last"], tmp_path)
    for newer, older in (("on_exception.ckpt", "last.ckpt"), ("last.ckpt", "on_exception.ckpt")):
        (folder / newer).write_bytes(b"new")
        (folder / older).write_bytes(b"old")
        os.utime(folder / older, ns=(1_000_000_000, 1_000_000_000))
        os.utime(folder / newer, ns=(2_000_000_000, 2_000_000_000))
        assert resolve_ckpt_path(cfg) == str(folder / newer)
    (folder / "last.ckpt").unlink()
    assert resolve_ckpt_path(cfg) == str(folder / "on_exception.ckpt")
    auto = compose_config("train", RUN + ["ckpt_path=auto"], tmp_path / "fresh")
    assert resolve_ckpt_path(auto) is None


def test_same_seed_same_embeddings_and_scores(tmp_path):
    first = train(compose_config("train", RUN + ["trainer.max_epochs=1"], tmp_path / "a"))
    second = train(compose_config("train", RUN + ["trainer.max_epochs=1"], tmp_path / "b"))
    assert {k: first[k] for k in FINAL_KEYS} == {k: second[k] for k in FINAL_KEYS}
    cfg = compose_config("train", RUN, tmp_path / "a")
    texts = ["A fast text editor", "Library for parsing JSON documents in C", "Chess engine"]
    vectors = [
        build_embedder(cfg, adapter_path=str(tmp_path / d / "adapter"), trainable=False).encode(texts) for d in "ab"
    ]
    assert (vectors[0] == vectors[1]).all()  # bitwise on CPU
    assert first["provenance"]["seed"] == 42 and first["provenance"]["versions"]["torch"]


def test_nonfinite_loss_stops_with_the_batch_saved(tmp_path):
    overrides = [o for o in RUN if not o.startswith("callbacks.")] + ["trainer.max_epochs=1", "callbacks=none"]
    cfg = compose_config("train", overrides, tmp_path)
    with open_dict(cfg):
        cfg.loss = {"_target_": "tests.test_reliability.NanLoss"}
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 0"):
        train(cfg)
    saved = json.loads((tmp_path / "nonfinite_batch_step0.json").read_text())
    assert len(saved["text"]) == len(saved["text_pos"]) == 8


class NanLoss(torch.nn.Module):
    """A loss that returns NaN (stands in for a diverged run)."""

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor, negatives=None) -> torch.Tensor:
        return (anchors.sum() + positives.sum()) * float("nan")

    @staticmethod
    def similarities(anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        return anchors @ positives.T
