"""The training-step levers of issue #27 (each off by default until measured faster): one SDPA call per packed
batch (`model.attention_groups=single`), fused AdamW (`optimizer.fused`), Dynamo guards skipped after warm-up
(`model.compile_guards`) — each gives the default path's vectors, gradients or weights."""

from __future__ import annotations

import pytest
import torch
from omegaconf import open_dict

from embedexp.cli.train import train
from embedexp.core.errors import ConfigError
from embedexp.core.validation import check_config
from embedexp.model import packing
from embedexp.model.build import build_embedder
from tests.test_speed import embed_with_grads


def randomized(embedder):
    """The embedder with non-zero LoRA B matrices, so gradients depend on the whole path."""
    with torch.no_grad():
        for name, param in embedder.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return embedder


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_one_sdpa_call_per_batch_gives_the_length_groups_vectors_and_gradients(tiny_train_cfg, monkeypatch, attention):
    calls = []
    original = packing.single_block_attention
    monkeypatch.setattr(packing, "single_block_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    results = {}
    for mode in ("length", "single"):
        with open_dict(tiny_train_cfg):
            tiny_train_cfg.model.attention_groups = mode
            tiny_train_cfg.model.attention_mode = attention
        torch.manual_seed(0)
        results[mode] = embed_with_grads(randomized(build_embedder(tiny_train_cfg)))
        assert bool(calls) is (mode == "single")  # the single path really ran (one call per layer), and only there
    (vectors, grads), (single_vectors, single_grads) = results["length"], results["single"]
    assert torch.allclose(single_vectors, vectors, atol=1e-5)
    for name, grad in grads.items():
        assert torch.allclose(single_grads[name], grad, atol=1e-5), name


def test_one_sdpa_call_matches_under_bf16(tiny_train_cfg):
    vectors = {}
    for mode in ("length", "single"):
        with open_dict(tiny_train_cfg):
            tiny_train_cfg.model.attention_groups = mode
        embedder = build_embedder(tiny_train_cfg, frozen_dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            vectors[mode] = torch.tensor(embedder.encode(["a b c", "a much longer text than the first one is", "x"]))
    assert (vectors["length"] * vectors["single"]).sum(dim=1).min() > 0.999


def test_a_layout_in_one_group_holds_every_text():
    mask = (torch.arange(60)[None] < torch.tensor([[2], [60], [1], [58]])).long()  # two short texts, two long ones
    grouped, _ = packing.pack_layout(mask)
    single, positions = packing.pack_layout(mask, single=True)
    assert len(grouped.groups) == 2 and len(single.groups) == 1 and single.single
    assert single.groups[0].valid.shape == (4, 60) and positions[:4].tolist() == [0, 1, 0, 1]


def test_unknown_switch_values_are_refused_at_the_door(tiny_train_cfg):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.attention_groups = "one"
        tiny_train_cfg.optimizer.fused = "yes"
        tiny_train_cfg.model.compile_guards = "none"
    with pytest.raises(ConfigError) as error:
        check_config(tiny_train_cfg)
    for key in ("model.attention_groups='one'", "optimizer.fused='yes'", "model.compile_guards='none'"):
        assert key in str(error.value)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fused_adamw_trains_the_same_adapter(tiny_train_cfg, tmp_path, monkeypatch, precision):
    calls = []
    fused = torch._fused_adamw_
    monkeypatch.setattr(torch, "_fused_adamw_", lambda *a, **k: calls.append(1) or fused(*a, **k))
    adapters = {}
    for on in (False, True):
        folder = tmp_path / str(on)
        with open_dict(tiny_train_cfg):
            tiny_train_cfg.paths.output_dir = str(folder)
            tiny_train_cfg.trainer.precision = precision
            tiny_train_cfg.trainer.max_epochs = 1
            tiny_train_cfg.optimizer.fused = on  # with gradient clipping (trainer.gradient_clip_val: 1.0)
            tiny_train_cfg.callbacks.clustering_eval = None
        train(tiny_train_cfg)
        assert bool(calls) is on
        adapters[on] = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in adapters[False].items():
        assert torch.allclose(adapters[True][name], value, atol=1e-5), name


def test_guards_are_skipped_in_training_steps_after_the_warmup_only(tiny_train_cfg, tmp_path, monkeypatch):
    from embedexp.training.module import GUARD_WARMUP_STEPS

    stances = []
    set_stance = torch.compiler.set_stance
    monkeypatch.setattr(
        torch.compiler, "set_stance", lambda *a, **k: stances.append(k.get("skip_guard_eval_unsafe", False))
    )
    losses = {}
    for mode in ("all", "skip_after_warmup"):
        with open_dict(tiny_train_cfg):
            tiny_train_cfg.paths.output_dir = str(tmp_path / mode)
            tiny_train_cfg.model.compile_guards = mode
            tiny_train_cfg.trainer.max_steps = GUARD_WARMUP_STEPS + 2
            tiny_train_cfg.callbacks.clustering_eval = None
        losses[mode] = train(tiny_train_cfg)["train/loss"]
        if mode == "all":
            assert stances == []
    assert stances == [False] * GUARD_WARMUP_STEPS + [True, False] * 2  # skipped in steps 4 and 5, restored after
    assert losses["skip_after_warmup"] == pytest.approx(losses["all"], abs=1e-6)
    set_stance("default")
