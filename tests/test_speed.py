"""Training at the machine's speed: packed batches, length groups, bf16 frozen weights, the training prefix cache,
torch.compile, FLOP counting and the throughput callback — each equal in result to the plain path."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import open_dict

from embedexp.cli.train import train
from embedexp.model.build import build_embedder
from embedexp.model.flops import FlopCounter
from embedexp.model.packing import plan_length_groups
from embedexp.training.loss import InfoNCELoss

ANCHORS = ["A fast text editor", "Chess engine", "GNU compiler collection", "JSON parser"]
POSITIVES = [
    "A small, fast text editor for the terminal with syntax highlighting and macros for many languages.",
    "Plays chess at grandmaster strength; speaks the UCI protocol to graphical front ends.",
    "The GNU compilers for C and C++, with the assembler, linker and standard libraries they need.",
    "Reads and writes JSON documents in C, streaming or as a tree, with schema checks.",
]
TEXTS = ANCHORS + POSITIVES


def embed_with_grads(embedder) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Vectors of TEXTS and the LoRA gradients of an InfoNCE loss over them."""
    embedder.model.train()
    embedder.model.zero_grad()
    vectors = embedder.embed(TEXTS)
    InfoNCELoss()(vectors[:4], vectors[4:]).backward()
    grads = {n: p.grad.clone() for n, p in embedder.model.named_parameters() if p.requires_grad}
    return vectors.detach(), grads


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_packed_batches_give_the_padded_vectors_and_gradients(tiny_train_cfg, attention, side):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.attention_mode = attention
        tiny_train_cfg.model.padding_side = side
        tiny_train_cfg.model.lora.dropout = 0.0
    results = {}
    for packed in (False, True):
        torch.manual_seed(0)
        embedder = build_embedder(tiny_train_cfg, packed=packed)
        assert embedder.packed is packed
        with torch.no_grad():  # non-zero LoRA, so its gradients depend on the whole path
            for name, param in embedder.model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        results[packed] = embed_with_grads(embedder)
    (padded, padded_grads), (packed, packed_grads) = results[False], results[True]
    assert torch.allclose(packed, padded, atol=1e-5)
    assert padded_grads.keys() == packed_grads.keys()
    for name, grad in padded_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-5), name


def test_length_groups_pad_less_than_one_batch():
    lengths = [12, 14, 11, 13] * 4 + [60, 75, 90, 110] * 4  # anchors and positives of one step
    groups = plan_length_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert all(len(group) >= 2 for group in groups)
    padded = sum(len(group) * max(lengths[i] for i in group) for group in groups)
    assert 1 < len(groups) and padded < 0.75 * len(lengths) * max(lengths)


def test_frozen_weights_held_in_bf16_embed_like_autocast(tiny_train_cfg):
    reference = build_embedder(tiny_train_cfg)
    held = build_embedder(tiny_train_cfg, frozen_dtype=torch.bfloat16)
    dtypes = {p.requires_grad: set() for p in held.model.parameters()}
    for param in held.model.parameters():
        dtypes[param.requires_grad].add(param.dtype)
    assert dtypes == {False: {torch.bfloat16}, True: {torch.float32}}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = reference.encode(TEXTS), held.encode(TEXTS)
    cosine = (torch.tensor(a) * torch.tensor(b)).sum(dim=1)
    assert cosine.min() > 0.99


def test_epochs_after_the_first_reuse_the_frozen_prefix_and_train_the_same(tiny_train_cfg, tmp_path):
    adapters = {}
    for cached in (False, True):
        folder = tmp_path / str(cached)
        with open_dict(tiny_train_cfg):
            tiny_train_cfg.paths.output_dir = str(folder)
            tiny_train_cfg.trainer.max_epochs = 2
            tiny_train_cfg.model.lora.last_n_layers = 1
            tiny_train_cfg.model.lora.dropout = 0.0
            tiny_train_cfg.objective.cache_frozen_prefix = cached
            tiny_train_cfg.callbacks.clustering_eval.cache_frozen_prefix = False
        metrics = train(tiny_train_cfg)
        adapters[cached] = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        if cached:  # epoch 2 ran the adapted layer only: every text of the epoch was served from the cache
            assert metrics["throughput/cached_share"] > 0.4
    assert adapters[False].keys() == adapters[True].keys()
    for name, value in adapters[False].items():
        assert torch.allclose(adapters[True][name], value, atol=1e-5), name


def test_flop_counter_counts_every_matmul_of_the_tiny_llama(tiny_train_cfg):
    embedder = build_embedder(tiny_train_cfg)  # 2 layers, hidden 64, 4 heads x 16, 2 kv heads, MLP 128, LoRA r=4 q, v
    counter = FlopCounter.of(embedder.model)
    linear = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128
    lora = 4 * (64 + 64) + 4 * (64 + 32)
    assert counter.frozen_params == (linear, linear) and counter.trained_params == (lora, lora)
    assert counter.first_adapted == 0 and counter.attention_width == 64
    lengths = [3, 5]
    pairs = 6 + 15  # causal: L(L+1)/2 per text
    forward = 2 * 2 * (linear + lora) * 8 + 4 * 64 * pairs * 2
    backward = 2 * 2 * linear * 8 + 4 * 2 * lora * 8 + 8 * 64 * pairs * 2
    assert counter.forward(lengths) == forward
    assert counter.training_step(lengths) == forward + backward


@pytest.mark.parametrize("packed", [True, False])
def test_throughput_and_mfu_are_recorded(tiny_train_cfg, tmp_path, packed):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.packed = packed
        tiny_train_cfg.callbacks.clustering_eval.at_start = False
    train(tiny_train_cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["throughput/tokens_per_s"] > 0 and 0 < metrics["throughput/mfu"] < 1
    assert metrics["throughput/peak_tflops"] > 0 and metrics["throughput/warmup_s"] > 0
    assert (metrics["throughput/padding"] == 0) is packed  # packed runs compute no padding
    assert metrics["throughput/peak_raised"] == 1 and 0 <= metrics["throughput/peak_spread"] < 1
    peak = metrics["throughput/peak"]  # the tiny model runs far below the matmul peak: measured, never raised
    assert peak["source"] == "measured" and peak["threads"] == torch.get_num_threads()
    assert peak["rounds_tflops"]["min"] <= peak["rounds_tflops"]["median"] <= peak["rounds_tflops"]["max"]
    assert metrics["throughput/peak_tflops"] == pytest.approx(peak["tflops"])  # logged metrics are float32
    assert metrics["throughput/peak_measured_tflops"] == pytest.approx(peak["measured_tflops"])


def test_mfu_cannot_exceed_one_when_the_measured_peak_is_too_low(tiny_train_cfg, tmp_path, monkeypatch):
    from embedexp.core import peak as peak_module

    monkeypatch.setattr(peak_module, "_measured", {})
    monkeypatch.setattr(peak_module, "time_rounds", lambda dtype, rounds=5: [1e6, 0.5e6])  # 1 MFLOP/s: far too slow
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.callbacks.clustering_eval.at_start = False
        tiny_train_cfg.callbacks.throughput.peak_cache_dir = str(tmp_path / "peak")
    train(tiny_train_cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["throughput/tflops"] > 1e-6  # the steps beat the fake peak...
    assert 0 < metrics["throughput/mfu"] <= 1  # ...and so raised it to their rate
    assert metrics["throughput/peak_raised"] > 1 and metrics["throughput/peak"]["source"] == "observed"
    assert metrics["throughput/mfu"] == pytest.approx(metrics["throughput/tflops"] / metrics["throughput/peak_tflops"])
    assert json.loads(next((tmp_path / "peak").iterdir()).read_text())["flops"] == 1e6  # the cache holds matmuls only


def test_gradcache_second_pass_is_no_cache_hit(tiny_train_cfg, tmp_path):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.callbacks.clustering_eval.at_start = False
        tiny_train_cfg.grad_cache.chunk_size = 4
        tiny_train_cfg.model.lora.last_n_layers = 1  # a frozen layer below the adapted one: the prefix cache is on
    metrics = train(tiny_train_cfg)
    # one epoch: each text's frozen layer ran in its step's first pass; the second pass reused it (counted as a hit, it
    # gave 0.5 and more); only texts that recur in the data (15 of these 128) were served from an earlier step
    assert 0 < metrics["throughput/cached_share"] < 0.25


@pytest.mark.slow
def test_compiled_layers_embed_and_train_like_eager_ones(tiny_train_cfg):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.lora.dropout = 0.0
    torch.manual_seed(0)
    eager = embed_with_grads(build_embedder(tiny_train_cfg))
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.compile = True
    torch.manual_seed(0)
    compiled_embedder = build_embedder(tiny_train_cfg)
    assert all(layer._compiled_call_impl is not None for layer in compiled_embedder.model.base_model.model.layers)
    compiled = embed_with_grads(compiled_embedder)
    assert torch.allclose(compiled[0], eager[0], atol=1e-4)
    for name, grad in eager[1].items():
        assert torch.allclose(compiled[1][name], grad, atol=1e-4), name


@pytest.mark.slow
def test_a_pooling_that_reads_attention_keeps_only_its_layers_eager(tiny_train_cfg):
    """Hooks on a compiled layer's attention never fire: the layers `final_token_attention` reads stay uncompiled."""
    from hydra.utils import instantiate

    from .conftest import compose_config

    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.compile = True
        tiny_train_cfg.pooling = compose_config("train", ["pooling=final_token_attention"], ".").pooling
    embedder = build_embedder(tiny_train_cfg)
    layers = embedder.model.base_model.model.layers
    assert [layer._compiled_call_impl is None for layer in layers] == [False] * (len(layers) - 1) + [True]
    assert embedder.encode(["a package for parsing", "a game of chess"], batch_size=2).shape[0] == 2
    assert instantiate(tiny_train_cfg.pooling).needs_attention


def test_a_pooling_reading_attention_without_naming_layers_keeps_every_layer_eager(tiny_train_cfg, monkeypatch):
    """`Embedder.forward` reads every layer's attention for a pooling without `attention_layers`: none may compile."""
    from embedexp.model.pooling import MeanPooling

    monkeypatch.setattr(MeanPooling, "needs_attention", True)  # a user's pooling: needs attention, names no layers
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.compile = True
    embedder = build_embedder(tiny_train_cfg)
    assert all(layer._compiled_call_impl is None for layer in embedder.model.base_model.model.layers)


def test_training_runs_the_embedder_in_training_mode(tiny_train_cfg):
    """A pretrained model loads in eval mode; LoRA dropout must still be active while training."""
    import lightning as L
    from hydra.utils import instantiate

    from embedexp.cli.train import build_module

    embedder = build_embedder(tiny_train_cfg)
    embedder.model.eval()  # as transformers' from_pretrained returns it
    modes = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append(all(m.training for m in pl_module.embedder.modules()))

    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, callbacks=[Spy()], accelerator="cpu")
    trainer.fit(build_module(tiny_train_cfg, embedder), datamodule=instantiate(tiny_train_cfg.data))
    assert modes == [True, True]
