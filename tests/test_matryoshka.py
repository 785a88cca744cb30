"""Matryoshka loss over nested prefixes, evaluation at each prefix, and truncated exports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import open_dict
from sentence_transformers import SentenceTransformer

from embedexp.cli.train import train
from embedexp.core.errors import ConfigError
from embedexp.model.matryoshka import truncate_normalized
from embedexp.training.loss import InfoNCELoss, MatryoshkaLoss

from .conftest import TINY_OVERRIDES, compose_config
from .export_helpers import TEXTS, export, make_run, reference


def tensors(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anchors, positives [4, 8] and hard negatives [3, 8]."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, 8, generator=generator) for n in (4, 4, 3))


def test_one_full_dim_is_infonce():
    a, p, n = tensors()
    for negatives in (None, n):
        plain = InfoNCELoss(temperature=0.1, margin=0.02)(a, p, negatives)
        wrapped = MatryoshkaLoss(dims=["full"], temperature=0.1, margin=0.02)(a, p, negatives)
        assert wrapped.item() == pytest.approx(plain.item(), rel=1e-6)


def test_each_prefix_contributes_with_its_weight():
    a, p, n = tensors()
    info = InfoNCELoss(temperature=0.1)
    parts = [info(a[:, :d], p[:, :d], n[:, :d]).item() for d in (2, 4, 8)]
    loss = MatryoshkaLoss(dims=[2, 4, "full"], weights=[0.5, 1.0, 2.0], temperature=0.1)(a, p, n)
    assert loss.item() == pytest.approx(0.5 * parts[0] + parts[1] + 2 * parts[2], rel=1e-5)
    for changed in ([1.5, 1.0, 2.0], [0.5, 2.0, 2.0]):  # changing any prefix's weight changes the loss
        other = MatryoshkaLoss(dims=[2, 4, "full"], weights=changed, temperature=0.1)(a, p, n)
        assert other.item() != pytest.approx(loss.item(), rel=1e-4)


def test_bad_dims_and_weights_name_the_key():
    with pytest.raises(ConfigError, match="loss.weights"):
        MatryoshkaLoss(dims=[2, 4], weights=[1.0])
    with pytest.raises(ConfigError, match="loss.dims"):
        MatryoshkaLoss(dims=[0, "half"])
    with pytest.raises(ConfigError, match="loss.dims \\[128\\] exceed"):
        MatryoshkaLoss(dims=[16, 128]).check_dim(64)


def test_loss_group_keeps_the_temperature_overridable(tmp_path):
    cfg = compose_config("train", ["loss.temperature=0.1"], tmp_path)
    assert cfg.loss._target_ == "embedexp.training.loss.InfoNCELoss" and cfg.loss.temperature == 0.1
    assert cfg.callbacks.clustering_eval.dims is None
    cfg = compose_config("train", ["loss=matryoshka", "loss.temperature=0.1"], tmp_path)
    assert cfg.loss.temperature == 0.1 and list(cfg.callbacks.clustering_eval.dims) == [64, 128, 256, "full"]


def test_training_scores_every_prefix(tmp_path):
    overrides = ["loss=matryoshka", "loss.dims=[16,32,full]", "data.batch_size=8", "data.source.max_pairs=16"]
    cfg = compose_config("train", TINY_OVERRIDES + overrides + ["trainer.max_epochs=1"], tmp_path)
    with open_dict(cfg):
        cfg.callbacks.clustering_eval.at_start = False
        cfg.callbacks.clustering_eval.zero_shot_cache_dir = None
    metrics = train(cfg)
    for key in ("val/clustering_mean@16", "val/clustering_mean@32", "val/DebianShortDescSectionClustering@16"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert not [k for k in metrics if k.endswith("@64")]  # the full size is the plain key
    results = pd.read_csv(tmp_path / "clustering_results.csv")
    assert {"clustering_mean@16", "clustering_mean@32", "clustering_mean"} <= set(results.columns)
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert "val/clustering_mean@16" in logged.columns


def test_prefix_scores_are_the_scores_of_truncated_vectors(tiny_train_cfg):
    from embedexp.evaluation.clustering import evaluate_clustering
    from embedexp.evaluation.tasks import build_tasks
    from embedexp.model.build import build_embedder

    embedder = build_embedder(tiny_train_cfg)
    tasks = build_tasks(tiny_train_cfg.tasks)
    scores = evaluate_clustering(embedder, tasks, precision="32", dims=[8])
    original = embedder.encode

    def truncated(texts, **kwargs):
        return truncate_normalized(original(texts, **kwargs), 8)

    embedder.encode = truncated
    direct = evaluate_clustering(embedder, tasks, precision="32")
    assert {f"{k}@8": v for k, v in direct.items()} == {k: v for k, v in scores.items() if k.endswith("@8")}
    assert scores["clustering_mean@8"] != scores["clustering_mean"]


@pytest.fixture(scope="module")
def truncated_export(tmp_path_factory):
    """A tiny mean/eol run exported in every form at truncate_dim=16."""
    root = tmp_path_factory.mktemp("truncated")
    run = make_run(root / "run", ["pooling=mean", "prompt=eol", "loss=matryoshka", "loss.dims=[16,full]"])
    return run, export(run, root / "export", "truncate_dim=16"), root / "export"


def test_truncated_export_equals_the_truncated_embedding(truncated_export):
    run, results, output = truncated_export
    expected = truncate_normalized(reference(run)["right"], 16)
    for form, result in results.items():
        manifest = json.loads((output / form / "embedexp_manifest.json").read_text())
        assert manifest["embed_dim"] == 16 and manifest["truncate_dim"] == 16 and result["min_cosine"] >= 0.9999
    folder = output / "sentence_transformers"
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["truncate_dim"] == 16
    model = SentenceTransformer(str(folder), device="cpu")  # plain: no custom code, no truncate_dim argument
    assert model.get_embedding_dimension() == 16 and model.encode(TEXTS).shape == (len(TEXTS), 16)
    vectors = model.encode(TEXTS, normalize_embeddings=True)  # sentence-transformers truncates after Normalize
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.sum(vectors * expected, axis=1).min() > 0.9999
    from embedexp.export import load_export

    merged = load_export(output / "merged").encode(TEXTS)
    assert merged.shape == (len(TEXTS), 16) and np.sum(merged * expected, axis=1).min() > 0.9999


def test_truncate_dim_beyond_the_embedding_is_an_error(truncated_export, tmp_path):
    with pytest.raises(ConfigError, match="truncate_dim=65"):
        export(truncated_export[0], tmp_path / "too_big", "truncate_dim=65")
