"""Each private-attribute accessor in embedexp.core.compat works against the installed library versions."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaModel

from embedexp.core import compat

SRC = Path(compat.__file__).resolve().parents[1]
# the private names compat.py wraps; nothing else in src/embedexp may spell them
PRIVATE = re.compile(
    r"\._attn_implementation|_accelerator_connector|\._experiment\b|\._tokenizer\b|_collect_rng_states|_set_rng_states"
    r"|_printed_messages|\.rng_state\b|\.np_rng\b"
)


def tiny_llama(attn_implementation: str = "sdpa") -> LlamaModel:
    """A two-layer random llama built from its config (no tokenizer needed)."""
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        attn_implementation=attn_implementation,
    )
    return LlamaModel(config)


def test_attn_implementation_reads_what_transformers_runs(tiny_backbone):
    assert compat.attn_implementation(tiny_backbone.model) == "sdpa"  # build_tiny_llama's default
    model = tiny_llama("sdpa")
    assert compat.attn_implementation(model) == compat.attn_implementation(model.config) == "sdpa"
    model.set_attn_implementation("eager")  # the public setter, read back through compat
    assert compat.attn_implementation(model) == "eager"
    assert compat.attn_implementation(object()) is None


def test_a_swapped_attn_implementation_is_what_the_layers_run():
    model = tiny_llama("sdpa")
    weights = []
    model.layers[0].self_attn.register_forward_hook(lambda _module, _inputs, outputs: weights.append(outputs[1]))
    assert compat.swap_attn_implementation(model, "eager") == "sdpa"
    model(input_ids=torch.tensor([[1, 2, 3]]))
    assert compat.swap_attn_implementation(model, "sdpa") == "eager"
    model(input_ids=torch.tensor([[1, 2, 3]]))
    assert weights[0] is not None and weights[0].shape == (1, 2, 3, 3) and weights[1] is None  # eager, then sdpa
    assert compat.swap_attn_implementation(model, None) == "sdpa" == compat.attn_implementation(model)


def test_causal_flags_are_the_self_attention_modules_and_switch():
    model = tiny_llama()
    modules = compat.causal_flag_modules(model)
    assert modules == [layer.self_attn for layer in model.layers] and all(m.is_causal for m in modules)
    ids = torch.tensor([[1, 2, 3, 4]])
    causal = model(input_ids=ids).last_hidden_state
    compat.set_causal_flags(modules, False)
    model.config.is_causal = False
    assert not any(m.is_causal for m in modules)
    bidirectional = model(input_ids=ids).last_hidden_state
    assert not torch.allclose(causal[0, 0], bidirectional[0, 0])  # the first token now sees the later ones


@pytest.mark.parametrize("flag", [False, True])
def test_distributed_sampler_flag_of_a_real_trainer(flag, tmp_path):
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=flag,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
    )
    assert compat.distributed_sampler_requested(trainer) is flag
    assert compat.distributed_sampler_requested(None) is False


def test_started_experiment_does_not_start_a_lightning_logger(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path))
    assert compat.started_experiment(logger) is None
    writer = logger.experiment  # the property starts it
    assert compat.started_experiment(logger) is writer


@pytest.mark.slow  # starts W&B's service process (offline): a few seconds
def test_started_experiment_does_not_start_a_wandb_run(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # WandbLogger(offline=True) sets WANDB_MODE=dryrun for the process

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="embedexp-compat")
    assert compat.started_experiment(logger) is None  # reading it started nothing
    run = logger.experiment
    try:
        assert compat.started_experiment(logger) is run
    finally:
        run.finish()


def test_marked_wandb_warnings_are_not_printed():
    script = (  # a fresh process: W&B's printed-warning memory and silent mode are process-wide
        "from wandb.errors import term\n"
        "from embedexp.core import compat\n"
        "compat.mark_wandb_warnings_shown(['marked by embedexp'])\n"
        "term.termwarn('marked by embedexp', repeat=False)\n"
        "term.termwarn('not marked', repeat=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not marked" in result.stderr and "marked by embedexp" not in result.stderr


def test_reset_task_rngs_gives_mteb_tasks_the_rngs_of_their_seed():
    from embedexp.evaluation.tasks import make_local_task

    task = make_local_task("T", [f"text {i}" for i in range(6)], list("aabbcc"), "d", n_kmeans_runs=1, seed=7)
    first = (task.rng_state.random(), float(task.np_rng.random()))
    task.rng_state.random(), task.np_rng.random()  # an evaluation advances them
    compat.reset_task_rngs([task])
    assert (task.rng_state.random(), float(task.np_rng.random())) == first


def test_rng_states_round_trip():
    def draw() -> tuple:
        return torch.rand(3).tolist(), float(np.random.rand()), random.random()

    states = compat.collect_rng_states()
    assert {"torch", "numpy", "python"} <= set(states)
    first = draw()
    compat.set_rng_states(states)
    assert draw() == first


def test_no_other_module_touches_the_wrapped_private_names():
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        if path.name != "compat.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert offenders == []
