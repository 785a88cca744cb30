"""End-to-end training on the tiny model through the real composed config."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from embedexp.cli.train import train
from embedexp.core.compat import attn_implementation
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate
from embedexp.training.loss import InfoNCELoss

from .conftest import compose_config

TEXTS = ["A fast text editor", "Library for parsing JSON documents in C", "Chess engine", "GNU compiler collection"]


def test_two_epoch_fit_lowers_loss_and_logs_v_measure(tiny_train_cfg, tmp_path):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.trainer.max_epochs = 2
        tiny_train_cfg.trainer.log_every_n_steps = 1
    metrics = train(tiny_train_cfg)
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    losses = log["train/loss"].dropna().tolist()
    assert len(losses) >= 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    # the callback scored zero-shot, after epoch 1 and after epoch 2
    results = pd.read_csv(tmp_path / "clustering_results.csv")
    assert results["stage"].tolist() == ["zero_shot", "epoch", "epoch"]
    tasks = [c for c in results.columns if c.endswith("Clustering")]
    assert len(tasks) == 2  # the mean is the mean of the recorded tasks, row by row
    assert results["clustering_mean"].tolist() == pytest.approx(results[tasks].mean(axis=1).tolist(), abs=1e-12)
    # the final metrics are the last evaluation's scores, the zero-shot metrics the first's
    for task in [*tasks, "clustering_mean"]:
        assert metrics[f"val/{task}"] == pytest.approx(results[task].iloc[-1], abs=1e-12)
        assert metrics[f"zero_shot/{task}"] == pytest.approx(results[task].iloc[0], abs=1e-12)
    assert metrics["val/clustering_mean"] != metrics["zero_shot/clustering_mean"]  # training moved the scores
    assert "val/clustering_mean" in log.columns
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val/clustering_mean"] == pytest.approx(metrics["val/clustering_mean"])
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"] and all("lora_" in key for key in checkpoint["state_dict"])


def test_saved_adapter_reloads_to_the_same_embeddings(tiny_train_cfg, tmp_path):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.trainer.max_epochs = 1
        tiny_train_cfg.callbacks.clustering_eval.at_start = False
    train(tiny_train_cfg)
    reloaded = build_embedder(tiny_train_cfg, adapter_path=str(tmp_path / "adapter"), trainable=False)
    base = build_embedder(tiny_train_cfg, new_lora=False)
    trained_vectors = reloaded.encode(TEXTS)
    assert not torch.allclose(torch.tensor(trained_vectors), torch.tensor(base.encode(TEXTS)), atol=1e-4)
    again = build_embedder(tiny_train_cfg, adapter_path=str(tmp_path / "adapter"), trainable=False).encode(TEXTS)
    assert torch.allclose(torch.tensor(trained_vectors), torch.tensor(again), atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "last", "weighted_mean", "max", "concat", "final_token_attention"])
def test_left_and_right_padding_give_the_same_embeddings(tiny_backbone, pooling):
    model = tiny_backbone.model
    original = attn_implementation(model)  # the session's model: switched back however the test ends
    if pooling == "final_token_attention":
        model.set_attn_implementation("eager")
    prompt = PromptTemplate("eol", 'This sentence: "{text}" means in one word:')
    configured = instantiate(compose_config("train", [f"pooling={pooling}"], ".").pooling)
    try:
        vectors = {
            side: Embedder(model, tiny_backbone.tokenizer, configured, prompt, padding_side=side).encode(
                TEXTS, sort_by_length=False
            )
            for side in ("left", "right")
        }
    finally:
        model.set_attn_implementation(original)
    assert torch.allclose(torch.tensor(vectors["left"]), torch.tensor(vectors["right"]), atol=1e-5)


def test_batching_does_not_change_embeddings(tiny_backbone):
    embedder = Embedder(tiny_backbone.model, tiny_backbone.tokenizer, MeanPooling(), PromptTemplate("none"))
    one_by_one = embedder.encode(TEXTS, batch_size=1)
    together = embedder.encode(TEXTS, batch_size=4)
    assert torch.allclose(torch.tensor(one_by_one), torch.tensor(together), atol=1e-5)


def test_lora_on_last_layers_only(tiny_train_cfg):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.lora.last_n_layers = 1
    embedder = build_embedder(tiny_train_cfg)
    trainable = [name for name, p in embedder.model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1." in name for name in trainable)


def test_wandb_logger_writes_offline_run_and_finishes(tiny_train_cfg, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "offline"))  # the logger sets dryrun: put it back

    from .conftest import compose_config

    cfg = compose_config(
        "train",
        [
            "model=tiny",
            "tasks=tiny",
            "logger=wandb",
            "trainer.precision=32-true",
            "data.batch_size=8",
            "data.source.max_pairs=32",
            "data.source.text_field=short",
            "run_name=wandb-probe",
            "trainer.log_every_n_steps=1",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert wandb.run is None  # finished, so the next multirun job starts its own run
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    record = next(runs[0].glob("*.wandb")).read_bytes()  # the run's log: config and metric history
    for key in (b"pooling", b"DebianShortDescSectionClustering", b"val/clustering_mean", b"train/loss"):
        assert key in record
    assert metrics["run_name"] == "wandb-probe"


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_reach_lora_weights(tiny_train_cfg, checkpointing):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.gradient_checkpointing = checkpointing
    embedder = build_embedder(tiny_train_cfg)
    embedder.model.train()
    vectors = embedder.embed(TEXTS)
    InfoNCELoss()(vectors[:2], vectors[2:]).backward()
    grads = {name: p.grad for name, p in embedder.model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for name, g in grads.items() if "lora_B" in name or "lora_A" in name)
    assert all(p.grad is None for p in embedder.model.parameters() if not p.requires_grad)


def test_frozen_prefix_cache_gives_the_same_embeddings_after_training_steps(tiny_train_cfg):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.lora.last_n_layers = 1
    embedder = build_embedder(tiny_train_cfg)
    texts = TEXTS * 3
    plain = embedder.encode(texts, batch_size=4)
    cache = embedder.enable_prefix_cache()
    assert cache.enabled and cache.split == 1
    assert torch.allclose(torch.tensor(embedder.encode(texts, batch_size=4)), torch.tensor(plain), atol=1e-5)
    # change the LoRA weights (as training does): cached prefix outputs stay valid, results follow the new weights
    with torch.no_grad():
        for name, param in embedder.model.named_parameters():
            if "lora_B" in name:
                param.add_(0.05)
    cached = embedder.encode(texts, batch_size=4)
    assert cache.hits >= 3 and cache.verified
    embedder.prefix_cache = None
    fresh = embedder.encode(texts, batch_size=4)
    assert not torch.allclose(torch.tensor(fresh), torch.tensor(plain), atol=1e-4)
    assert torch.allclose(torch.tensor(cached), torch.tensor(fresh), atol=1e-5)


def test_prefix_cache_is_off_when_every_layer_trains(tiny_train_cfg):
    embedder = build_embedder(tiny_train_cfg)  # LoRA in all layers: nothing frozen to reuse
    assert not embedder.enable_prefix_cache().enabled


def test_token_budget_batches():
    from embedexp.model.prefix_cache import plan_batches

    lengths = [50, 40, 40, 10, 10, 10, 10]
    assert plan_batches(lengths, batch_size=3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_batches(lengths, batch_size=8, max_batch_tokens=100) == [[0, 1], [2, 3], [4, 5, 6]]
    assert sum(len(b) for b in plan_batches(lengths * 5, 4, 64)) == 35


def test_zero_shot_scores_are_reused_for_the_same_configuration(tiny_train_cfg, tmp_path):
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.callbacks.clustering_eval.zero_shot_cache_dir = str(tmp_path / "zero_shot")
        tiny_train_cfg.trainer.max_epochs = 1
    first = train(tiny_train_cfg)
    (cached,) = (tmp_path / "zero_shot").glob("*.json")
    assert json.loads(cached.read_text())["clustering_mean"] == first["zero_shot/clustering_mean"]
    # a sentinel in the cache file: the second run must report it, proving the scores were read, not recomputed
    cached.write_text(json.dumps({k: 0.123456 for k in json.loads(cached.read_text())}))
    second = train(tiny_train_cfg)
    assert second["zero_shot/clustering_mean"] == 0.123456
    assert second["zero_shot/DebianShortDescSectionClustering"] == 0.123456
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.prompt.template = "Topic of: {text}"
    train(tiny_train_cfg)
    assert len(list((tmp_path / "zero_shot").glob("*.json"))) == 2


def test_module_optimizer_and_scheduler_come_from_config(tmp_path):
    from embedexp.cli.train import build_module
    from embedexp.core.errors import ConfigError
    from embedexp.training.module import EmbeddingModule

    from .conftest import TINY_OVERRIDES, compose_config

    def composed(*overrides: str):
        return compose_config("train", TINY_OVERRIDES + list(overrides), tmp_path)

    cfg = composed("optimizer.lr=0.5", "scheduler=null", "loss.temperature=0.1")
    embedder = build_embedder(cfg)
    module = build_module(cfg, embedder)
    assert type(module) is EmbeddingModule and module.loss_fn.temperature == 0.1
    optimizer = module.configure_optimizers()  # scheduler=null: the optimizer alone, constant LR
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == 0.5
    for override, key in [("warmup_ratio=2", "warmup_ratio"), ("grad_cache.chunk_size=0", "grad_cache.chunk_size")]:
        with pytest.raises(ConfigError, match=key):
            build_module(composed(override), embedder)
    with pytest.raises(ConfigError, match="optimizer: Invalid learning rate"):
        build_module(composed("optimizer.lr=-1"), embedder).configure_optimizers()


def test_learning_rate_warms_up_and_decays_by_the_configured_scheduler(tmp_path):
    """transformers' linear schedule: warm-up steps = warmup_ratio x the fit's 4 steps, then linear decay to 0."""
    from .conftest import TINY_OVERRIDES, compose_config

    monitor = ["+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor", "trainer.log_every_n_steps=1"]
    overrides = ["data.batch_size=8", "data.source.max_pairs=32", "optimizer.lr=0.01", "warmup_ratio=0.5"]
    cfg = compose_config("train", TINY_OVERRIDES + overrides + monitor + ["callbacks=none"], tmp_path)
    train(cfg)
    rates = pd.read_csv(tmp_path / "csv" / "metrics.csv")["lr-AdamW"].dropna().tolist()
    assert rates == pytest.approx([0.0, 0.005, 0.01, 0.005])  # steps 0, 1 warm up; 2, 3 decay
