"""Scale-out: DDP's gathered in-batch negatives and GradCache give the loss and gradients of one big batch."""

from __future__ import annotations

import contextlib
import copy

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict
from safetensors.torch import load_file

from embedexp.cli.train import train
from embedexp.data.datamodule import LengthGroupedBatchSampler, PairDataModule
from embedexp.model.build import build_embedder
from embedexp.training.grad_cache import GradCacheLoss, RngState
from embedexp.training.loss import InfoNCELoss, MatryoshkaLoss
from embedexp.training.module import EmbeddingModule, pair_texts

from .conftest import TINY_OVERRIDES, compose_config

ANCHORS = [
    "A fast text editor for the terminal",
    "Library for parsing JSON documents in C",
    "Chess engine that plays at master level",
    "GNU compiler collection front ends",
    "Tools for reading and writing PNG images",
    "Daemon that keeps the system clock in sync",
    "Python bindings for the Qt toolkit",
    "Fonts with wide Unicode coverage",
    "Command line music player",
    "Library for regular expressions",
    "Spreadsheet program of an office suite",
    "Utilities for managing disk partitions",
    "Web browser with tabs and extensions",
    "Mail transfer agent",
    "Documentation of the Perl language",
    "Game of falling blocks",
]
PAIRS = [(text, f"{text.lower()} (package)") for text in ANCHORS]


class ListPairs:
    """A pair source over a fixed list (picklable, for spawned processes)."""

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def load(self):
        return list(self.pairs)


def tiny_module(tmp_path, dropout: float = 0.0, chunk_size: int | None = None, seed: int = 0) -> EmbeddingModule:
    """The tiny llama with LoRA whose B matrices are random (at init B = 0 leaves the A gradients zero)."""
    cfg = compose_config("train", TINY_OVERRIDES + [f"model.lora.dropout={dropout}"], tmp_path)
    torch.manual_seed(seed)
    embedder = build_embedder(cfg)
    for name, param in embedder.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    embedder.model.train()
    return EmbeddingModule(embedder, loss=InfoNCELoss(temperature=0.05), grad_cache_chunk_size=chunk_size)


def lora_grads(module: EmbeddingModule) -> dict[str, torch.Tensor]:
    """Gradients of the trainable weights, then cleared."""
    grads = {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
    module.zero_grad()
    return grads


def assert_same_grads(actual: dict, expected: dict, atol: float = 1e-6, rtol: float = 1e-4) -> None:
    assert actual.keys() == expected.keys() and actual
    for name in expected:
        assert torch.allclose(actual[name], expected[name], atol=atol, rtol=rtol), name
    assert any(g.abs().sum() > 0 for name, g in expected.items() if "lora_A" in name)


def batch_of(pairs) -> dict[str, list[str]]:
    return {"text": [a for a, _ in pairs], "text_pos": [b for _, b in pairs]}


@pytest.mark.parametrize("loss", [InfoNCELoss(temperature=0.05), MatryoshkaLoss(dims=[16, 32, "full"])])
def test_grad_cache_equals_plain_loss_and_gradients(tmp_path, loss):
    module = tiny_module(tmp_path)
    module.loss_fn = loss
    batch = batch_of(PAIRS[:8])
    plain_loss = module.shared_step(batch, "train")
    plain_loss.backward()
    plain = lora_grads(module)
    for chunk_size in (3, 16):  # uneven chunks, and one chunk holding the whole batch
        module.grad_cache_chunk_size = chunk_size
        cached_loss = module.training_step(batch, 0)
        assert cached_loss.item() == pytest.approx(plain_loss.item(), abs=1e-5)
        assert all(p.grad is None for p in module.parameters())  # the chunks backpropagate in the loss's backward
        cached_loss.backward()
        assert_same_grads(lora_grads(module), plain)


def test_grad_cache_scales_by_what_the_caller_does_to_the_loss(tmp_path):
    """Accumulation divides the loss (and the fp16 scaler multiplies it): the cached chunks' gradients follow."""
    module = tiny_module(tmp_path, chunk_size=5)
    batch = batch_of(PAIRS[:8])
    module.training_step(batch, 0).backward()
    full = lora_grads(module)
    (module.training_step(batch, 0) / 4).backward()
    assert_same_grads(lora_grads(module), {name: grad / 4 for name, grad in full.items()})


def test_grad_cache_replays_dropout_masks(tmp_path, monkeypatch):
    """With dropout the cached and the replayed forward must draw the same masks: RNG replay makes them."""
    module = tiny_module(tmp_path, dropout=0.3, chunk_size=4)
    batch = batch_of(PAIRS[:8])
    texts = batch["text"] + batch["text_pos"]

    torch.manual_seed(7)  # reference: the same chunks with a graph, one forward each, from the same RNG stream
    vectors = torch.cat([module.embedder(module.embedder.tokenize(texts[i : i + 4])) for i in range(0, 16, 4)])
    reference_loss = module.loss_fn(vectors[:8], vectors[8:])
    reference_loss.backward()
    reference = lora_grads(module)

    torch.manual_seed(7)
    loss = module.training_step(batch, 0)
    loss.backward()
    assert loss.item() == pytest.approx(reference_loss.item(), abs=1e-6)
    assert_same_grads(lora_grads(module), reference)

    # without the replay the second forward draws fresh masks and the gradients are wrong
    monkeypatch.setattr(RngState, "replay", lambda self: contextlib.nullcontext())
    torch.manual_seed(7)
    module.training_step(batch, 0).backward()
    wrong = lora_grads(module)
    assert max((wrong[n] - reference[n]).abs().max().item() for n in reference) > 1e-4


def test_grad_cache_replays_the_forward_autocast(tmp_path):
    """Lightning's mixed precision autocasts the step, not the backward: the re-embedding must autocast as well."""
    module = tiny_module(tmp_path, chunk_size=4)
    batch = batch_of(PAIRS[:8])
    texts = pair_texts(batch)
    chunks = []
    for start in range(0, 16, 4):  # reference: the same chunks with a graph in bf16, each its own autocast region
        with torch.autocast("cpu", dtype=torch.bfloat16):
            chunks.append(module.embedder(module.embedder.tokenize(texts[start : start + 4])))
    vectors = torch.cat(chunks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference_loss = module.loss_fn(vectors[:8], vectors[8:])
    reference_loss.backward()
    reference = lora_grads(module)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.training_step(batch, 0)
    loss.backward()  # outside autocast, as the precision plugin runs it
    assert_same_grads(lora_grads(module), reference)


TRAIN_SMALL = TINY_OVERRIDES + [
    "data.batch_size=8",
    "data.source.max_pairs=32",
    "data.source.text_field=short",
    "optimizer.lr=1e-3",
    "callbacks=none",
]


def trained_weights(tmp_path, name: str, overrides: list[str]) -> dict[str, torch.Tensor]:
    """Train on the tiny model with `overrides`; the saved adapter's weights."""
    metrics = train(compose_config("train", TRAIN_SMALL + overrides, tmp_path / name))
    assert metrics["train/loss"] > 0
    return load_file(str(tmp_path / name / "adapter" / "adapter_model.safetensors"))


def assert_same_weights(actual: dict, expected: dict, atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.allclose(actual[key], tensor, atol=atol), key


def test_grad_cache_training_matches_plain_training(tmp_path, monkeypatch):
    """Through `train`: Lightning's automatic optimization with the GradCache loss, same weights after 4 steps."""
    calls = []
    original = GradCacheLoss.backpropagate

    def counted(self, *args):
        """Record every GradCache backward and the chunk size it ran with."""
        calls.append(self.chunk_size)
        return original(self, *args)

    monkeypatch.setattr(GradCacheLoss, "backpropagate", counted)
    clip = ["trainer.gradient_clip_val=0.05"]  # small enough to clip: both paths must clip alike
    plain = trained_weights(tmp_path, "plain", clip)
    assert calls == []
    cached = trained_weights(tmp_path, "cached", clip + ["grad_cache.chunk_size=5"])
    assert calls == [5, 5, 5, 5]  # 32 pairs / batch 8 = 4 steps, each one backward of 5-text chunks
    assert_same_weights(cached, plain)


def test_grad_cache_takes_lightnings_clipping_and_gradient_accumulation(tmp_path):
    """accumulate_grad_batches=2 and gradient_clip_val apply to GradCache as to plain backprop (SGD: scale shows)."""
    sgd = ["optimizer._target_=torch.optim.SGD", "optimizer.lr=0.5", "trainer.accumulate_grad_batches=2"]
    clip = ["trainer.gradient_clip_val=0.01"]
    plain = trained_weights(tmp_path, "plain", sgd + clip)
    cached = trained_weights(tmp_path, "cached", sgd + clip + ["grad_cache.chunk_size=5"])
    assert_same_weights(cached, plain)
    unclipped = trained_weights(tmp_path, "free", sgd + ["grad_cache.chunk_size=5", "trainer.gradient_clip_val=null"])
    assert max((unclipped[k] - cached[k]).abs().max().item() for k in cached) > 1e-3


class CaptureStep(L.Callback):
    """After the first backward (gradients already averaged by DDP), write this rank's loss, gradients and texts."""

    def __init__(self, folder: str) -> None:
        self.folder, self.grads = folder, None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        named = pl_module.named_parameters()
        self.grads = {n: p.grad.detach().clone() for n, p in named if p.requires_grad}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        record = {"grads": self.grads, "loss": float(loss), "texts": batch["text"]}
        torch.save(record, f"{self.folder}/rank{trainer.global_rank}.pt")


def ddp_step(tmp_path, module: EmbeddingModule, chunk_size: int | None) -> list[dict]:
    """One training step of `module` under conf/trainer/ddp_sim.yaml (2 spawned CPU processes, gloo)."""
    overrides = ["trainer=ddp_sim", "+trainer.strategy.start_method=spawn"]  # in-process: spawn, not re-run
    cfg = compose_config("train", TINY_OVERRIDES + overrides, tmp_path)
    folder = tmp_path / f"ddp_{chunk_size}"
    folder.mkdir()
    with open_dict(cfg):
        cfg.trainer.max_steps = 1
    trainer = instantiate(
        cfg.trainer,
        callbacks=[CaptureStep(str(folder))],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
        gradient_clip_val=None,
    )
    module.grad_cache_chunk_size = chunk_size
    datamodule = PairDataModule(ListPairs(PAIRS), batch_size=8, seed=3)
    trainer.fit(module, datamodule=datamodule)
    return [torch.load(folder / f"rank{rank}.pt") for rank in (0, 1)]


@pytest.mark.parametrize("chunk_size", [None, pytest.param(5, marks=pytest.mark.slow)])
def test_ddp_gathered_loss_and_gradients_equal_single_process(tmp_path, chunk_size):
    """2 ranks × 8 pairs with gathered negatives == 1 process × the same 16 pairs (plain step, and GradCache)."""
    module = tiny_module(tmp_path)
    reference_module = copy.deepcopy(module)
    ranks = ddp_step(tmp_path, module, chunk_size)

    # one process, one epoch: batches 0 and 1 of the same order are what ranks 0 and 1 trained on first
    datamodule = PairDataModule(ListPairs(PAIRS), batch_size=8, seed=3)
    datamodule.setup()
    pairs = datamodule.train_set.pairs
    sampler = LengthGroupedBatchSampler([len(a) + len(b) for a, b in pairs], batch_size=8, seed=3)
    first_two = sampler.batches()[:2]
    assert [ranks[r]["texts"] for r in (0, 1)] == [[pairs[i][0] for i in batch] for batch in first_two]
    global_batch = batch_of([pairs[i] for batch in first_two for i in batch])

    loss = reference_module.loss_fn(*reference_module.embed_pairs(global_batch))
    loss.backward()
    reference = lora_grads(reference_module)
    for rank in ranks:
        assert rank["loss"] == pytest.approx(loss.item(), abs=1e-5)  # every rank: the loss of all 16 pairs
        assert_same_grads({n.removeprefix("module."): g for n, g in rank["grads"].items()}, reference, atol=1e-6)


def test_use_distributed_sampler_is_refused_under_ddp(tmp_path):
    from embedexp.core.errors import ConfigError

    datamodule = PairDataModule(ListPairs(PAIRS), batch_size=4)
    datamodule.setup()
    for allowed in (False, True):  # the composed trainer=ddp_sim (2 CPU processes, not started), then the bad flag
        cfg = compose_config("train", TINY_OVERRIDES + ["trainer=ddp_sim"], tmp_path)
        with open_dict(cfg):
            cfg.trainer.use_distributed_sampler = allowed
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert (trainer.world_size, trainer.global_rank) == (2, 0)
        datamodule.trainer = trainer
        if not allowed:
            assert len(datamodule.train_dataloader()) == len(PAIRS) // 4 // 2  # this rank's half of the batches
            continue
        with pytest.raises(ConfigError, match="use_distributed_sampler must be false"):
            datamodule.train_dataloader()


def test_sampler_shards_are_disjoint_and_cover_the_epoch():
    lengths = list(range(40))
    shards = [LengthGroupedBatchSampler(lengths, 4, seed=1, num_replicas=2, rank=r).batches() for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    seen = [i for shard in shards for batch in shard for i in batch]
    assert sorted(seen) == list(range(40))
