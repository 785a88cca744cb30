"""Latent-attention pooling (NV-Embed): trainable weights that get gradients, train, save, reload and export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from sentence_transformers import SentenceTransformer

from embedexp.cli.train import train
from embedexp.core.errors import ConfigError
from embedexp.export import PROBE_TEXTS, SelfCheckError, check_export
from embedexp.model.build import build_embedder
from embedexp.model.pooling import POOLING_FOLDER, LatentAttentionPooling, MeanPooling

from .conftest import TINY_OVERRIDES, compose_config
from .export_helpers import TEXTS, export, make_run, reference

LATENT = ["pooling=latent_attention", "pooling.num_latents=8", "pooling.num_heads=4"]
WEIGHTS = f"{POOLING_FOLDER}/model.safetensors"  # beside the adapter (and merged) files


def states(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random hidden states [3, 5, 16] and a right-padded mask."""
    hidden = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(seed))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    return hidden, mask


def test_every_weight_receives_a_gradient():
    pooling = LatentAttentionPooling(hidden_size=16, num_latents=4, num_heads=2, zero_init=False)
    hidden, mask = states()
    pooling.pool_tokens(hidden, mask).pow(2).sum().backward()
    grads = {name: p.grad for name, p in pooling.named_parameters()}
    assert {"latents", "cross_attention.in_proj_weight", "mlp.0.weight", "mlp.2.weight"} <= set(grads)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_zero_init_starts_as_mean_pooling_and_learns_from_there():
    pooling = LatentAttentionPooling(hidden_size=16, num_latents=4, num_heads=2)
    hidden, mask = states()
    assert torch.allclose(pooling.pool_tokens(hidden, mask), MeanPooling().pool_tokens(hidden, mask), atol=1e-6)
    pooling.pool_tokens(hidden, mask).pow(2).sum().backward()
    assert pooling.cross_attention.out_proj.weight.grad.abs().sum() > 0 and pooling.mlp[2].weight.grad.abs().sum() > 0
    padded = hidden.clone()
    padded[1, 3:] = 1e3  # padding must not leak into the pooled vector
    assert torch.allclose(pooling.pool_tokens(padded, mask), pooling.pool_tokens(hidden, mask), atol=1e-5)


def test_bad_sizes_name_the_key():
    with pytest.raises(ConfigError, match="pooling.num_heads"):
        LatentAttentionPooling(hidden_size=10, num_heads=4)
    with pytest.raises(ConfigError, match="pooling.hidden_size"):
        LatentAttentionPooling()


def test_training_updates_the_pooling_and_the_adapter_reloads_it(tmp_path):
    overrides = TINY_OVERRIDES + LATENT + ["data.batch_size=8", "data.source.max_pairs=32", "optimizer.lr=1e-2"]
    cfg = compose_config("train", overrides + ["trainer.max_epochs=1"], tmp_path)
    with open_dict(cfg):
        del cfg.callbacks["clustering_eval"]
    before = build_embedder(cfg).pooling.state_dict()  # the same seed builds the same initial weights in train()
    assert before["latents"].shape == (8, 64)
    train(cfg)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert {f"embedder.pooling.{k}" for k in before} <= set(checkpoint)  # trained with the LoRA, checkpointed
    assert (tmp_path / "adapter" / WEIGHTS).is_file()
    reloaded = build_embedder(cfg, adapter_path=str(tmp_path / "adapter"), trainable=False)
    after = reloaded.pooling.state_dict()
    for key in ("latents", "cross_attention.in_proj_weight", "cross_attention.out_proj.weight", "mlp.2.weight"):
        assert not torch.equal(before[key], after[key]), key
        assert torch.allclose(checkpoint[f"embedder.pooling.{key}"], after[key])
    vectors = reloaded.encode(TEXTS)
    again = build_embedder(cfg, adapter_path=str(tmp_path / "adapter"), trainable=False).encode(TEXTS)
    assert np.array_equal(vectors, again)
    reloaded.pooling = MeanPooling()
    assert not np.allclose(reloaded.encode(TEXTS), vectors, atol=1e-4)  # the trained pooling is not the mean


def test_adapter_without_pooling_weights_is_an_error(tmp_path):
    run = make_run(tmp_path / "run", LATENT)
    (run / "adapter" / WEIGHTS).unlink()
    cfg = compose_config("train", TINY_OVERRIDES + LATENT, tmp_path / "cfg")
    with pytest.raises(ConfigError, match=f"{run / 'adapter' / POOLING_FOLDER}: no weights .*model.safetensors"):
        build_embedder(cfg, adapter_path=str(run / "adapter"))


@pytest.fixture(scope="module")
def latent_export(tmp_path_factory):
    """A tiny run with random LoRA and latent-attention weights, exported in all three forms."""
    root = tmp_path_factory.mktemp("latent")
    run = make_run(root / "run", [*LATENT, "prompt=eol"])
    return run, export(run, root / "export"), root / "export"


def test_export_carries_the_pooling_weights_and_passes_its_selfcheck(latent_export):
    run, results, output = latent_export
    assert all(r["min_cosine"] >= 0.9999 for r in results.values())
    assert (output / "adapter" / WEIGHTS).is_file() and (output / "merged" / WEIGHTS).is_file()
    folder = output / "sentence_transformers"
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"] for m in modules][1] == "embedexp.model.pooling.LatentAttentionPooling"  # the class itself
    assert (folder / "1_LatentAttentionPooling" / "model.safetensors").is_file()
    vectors = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True).encode(TEXTS)
    assert np.sum(vectors * reference(run)["right"], axis=1).min() > 0.9999


@pytest.mark.parametrize("form", ["sentence_transformers", "merged"])
def test_export_with_other_pooling_weights_fails_its_selfcheck(latent_export, tmp_path, form):
    run, _, output = latent_export
    folder = tmp_path / form
    shutil.copytree(output / form, folder)
    fresh = make_run(tmp_path / "fresh", [*LATENT, "prompt=eol", "seed=7"])  # same shapes, other weights
    into = folder / (POOLING_FOLDER if form == "merged" else "1_LatentAttentionPooling") / "model.safetensors"
    shutil.copy(fresh / "adapter" / WEIGHTS, into)  # one file layout everywhere: the pooling's own save()
    with pytest.raises(SelfCheckError, match="does not reproduce"):
        check_export(folder, reference(run, list(PROBE_TEXTS)), list(PROBE_TEXTS))
