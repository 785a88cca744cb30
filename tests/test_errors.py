"""Bad input gets one clear error naming the key, file or row; long texts are truncated with a warning."""

from __future__ import annotations

import logging

import pytest

from embedexp.cli.train import train
from embedexp.core.errors import ConfigError
from embedexp.evaluation.tasks import mteb_task
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate

from .conftest import TINY_OVERRIDES, compose_config


def test_long_texts_are_truncated_with_a_warning_count(tiny_backbone, caplog):
    embedder = Embedder(tiny_backbone.model, tiny_backbone.tokenizer, MeanPooling(), PromptTemplate("none"), 16)
    texts = ["word " * 100, "short text", "another " * 50]
    with caplog.at_level(logging.WARNING):
        vectors = embedder.encode(texts)
    assert vectors.shape[0] == 3
    assert "2 of 3 texts truncated to model.max_length=16" in caplog.text


def test_unknown_mteb_task_suggests_names():
    with pytest.raises(ConfigError, match="unknown mteb task 'TwentyNewsgroupClustering'.*TwentyNewsgroupsClustering"):
        mteb_task("TwentyNewsgroupClustering")


def test_missing_and_corrupt_adapter_folders(tiny_train_cfg, tmp_path):
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        build_embedder(tiny_train_cfg, adapter_path=str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot load LoRA adapter"):
        build_embedder(tiny_train_cfg, adapter_path=str(broken))


def test_resume_without_checkpoint_names_the_path(tmp_path):
    cfg = compose_config("train", TINY_OVERRIDES + ["ckpt_path=last"], tmp_path)
    with pytest.raises(ConfigError, match="ckpt_path: no checkpoint at .*last.ckpt"):
        train(cfg)


def test_pairs_file_missing_column_stops_before_training(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("anchor,text_pos\na,b\nc,d\n")
    cfg = compose_config("train", TINY_OVERRIDES + ["data=pairs_file", f"data.source.path={pairs}"], tmp_path / "run")
    with pytest.raises(Exception, match=r"pairs.csv: missing column\(s\) \['text'\]"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()
