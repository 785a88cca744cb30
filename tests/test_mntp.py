"""objective=mntp (LLM2Vec step 1): masking, the shifted loss, training, and a contrastive run started from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from embedexp.cli.train import build_module, train
from embedexp.core.errors import ConfigError, DataError
from embedexp.data.texts import TextFile
from embedexp.model.bidirectional import attention_mode
from embedexp.model.build import build_embedder
from embedexp.model.prompts import PromptTemplate
from embedexp.training.mntp import IGNORE, MNTPModule, mask_token_id, mask_tokens, mntp_loss

from .conftest import TINY_OVERRIDES, compose_config

TEXTS = [
    "A fast text editor for the terminal with syntax highlighting",
    "Library for parsing JSON documents in C",
    "GNU compiler collection for C, C++ and Fortran",
    "Chess engine with a graphical interface",
]
MNTP = TINY_OVERRIDES + ["objective=mntp", "callbacks=none", "data.batch_size=4", "data.source.max_pairs=8"]


def test_mask_tokens_masks_only_text_tokens_and_labels_only_them(tiny_backbone):
    tok = tiny_backbone.tokenizer
    batch = PromptTemplate("plain", "{text}", append_eos=True).tokenize(TEXTS, tok, 64)
    masked, labels = mask_tokens(batch, 0.5, mask_token_id(tok, "_"), len(tok), torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    assert chosen.any() and (chosen <= batch.text_mask.bool()).all()  # never specials (EOS) or pads
    assert not chosen[:, 0].any()  # the first token has no previous state to predict it from
    assert (labels[chosen] == batch.input_ids[chosen]).all()
    assert (masked[~chosen] == batch.input_ids[~chosen]).all()
    assert (masked[chosen] == mask_token_id(tok, "_")).float().mean() > 0.5  # ~80 % become the mask token


def test_only_masked_positions_contribute_through_the_previous_state():
    torch.manual_seed(0)
    hidden = torch.randn(2, 6, 8, requires_grad=True)
    head = torch.randn(11, 8)
    labels = torch.full((2, 6), IGNORE)
    labels[0, 3], labels[1, 5] = 4, 7
    loss = mntp_loss(hidden, labels, head)
    loss.backward()
    nonzero = hidden.grad.abs().sum(dim=-1) > 0
    expected = torch.zeros(2, 6, dtype=torch.bool)
    expected[0, 2] = expected[1, 4] = True  # token i is predicted from position i - 1
    assert torch.equal(nonzero, expected)
    logits = torch.stack([hidden[0, 2] @ head.T, hidden[1, 4] @ head.T])
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([4, 7])))


def test_mntp_config_composes_bidirectional_and_refuses_bad_mask_tokens(tmp_path):
    cfg = compose_config("train", MNTP, tmp_path)
    assert cfg.objective._target_ == "embedexp.training.mntp.MNTPModule" and cfg.model.attention_mode == "bidirectional"
    embedder = build_embedder(cfg)
    assert isinstance(build_module(cfg, embedder), MNTPModule)
    with open_dict(cfg):
        cfg.grad_cache.chunk_size = 4
    with pytest.raises(ConfigError, match="objective=mntp does not use GradCache: set grad_cache.chunk_size=null"):
        build_module(cfg, embedder)
    assert attention_mode(embedder.model) == "bidirectional"
    with pytest.raises(ConfigError, match="objective.mask_token"):
        MNTPModule(embedder, mask_token="two words")
    with pytest.raises(ConfigError, match="objective.mask_token=null"):
        MNTPModule(embedder, mask_token=None)  # the SmolLM2 tokenizer has no mask token


def test_mntp_loss_decreases_on_repeated_texts(tmp_path):
    cfg = compose_config("train", MNTP, tmp_path)
    module = MNTPModule(build_embedder(cfg), mask_probability=0.3)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(12):
        loss = module.mntp_step(TEXTS, torch.Generator().manual_seed(0))  # the same masks every step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.25  # from about ln(vocab) = 10.8 on the random tiny model


def test_mntp_run_and_a_contrastive_run_initialised_from_its_adapter(tmp_path):
    metrics = train(compose_config("train", MNTP + ["trainer.max_epochs=1", "optimizer.lr=5e-3"], tmp_path / "mntp"))
    assert np.isfinite(metrics["train/loss"])
    adapter = tmp_path / "mntp" / "adapter"
    mntp_cfg = compose_config("train", MNTP, tmp_path / "again")
    mntp = build_embedder(mntp_cfg, adapter_path=str(adapter), trainable=False).encode(TEXTS)
    overrides = TINY_OVERRIDES + ["model.attention_mode=bidirectional", f"model.init_adapter={adapter}"]
    started = build_embedder(compose_config("train", overrides, tmp_path / "contrastive"))
    np.testing.assert_allclose(started.encode(TEXTS), mntp, atol=1e-5)  # fresh LoRA (B = 0) on the merged MNTP
    assert sum(p.numel() for p in started.model.parameters() if p.requires_grad) > 0
    bidirectional = TINY_OVERRIDES + ["model.attention_mode=bidirectional"]
    base = build_embedder(compose_config("train", bidirectional, tmp_path / "b"))
    assert np.abs(base.encode(TEXTS) - mntp).max() > 1e-4
    with pytest.raises(ConfigError, match="model.init_adapter"):
        build_embedder(compose_config("train", TINY_OVERRIDES + [f"model.init_adapter={tmp_path}"], tmp_path / "x"))


def test_text_file_source(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first text\n\n  second text  \n", encoding="utf-8")
    assert TextFile(str(path)).load() == [("first text", "first text"), ("second text", "second text")]
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt"):
        TextFile(str(tmp_path / "empty.txt")).load()
