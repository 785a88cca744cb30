"""The zero-shot score cache's key: a changed model never gets another model's cached scores."""

from __future__ import annotations

import torch

from embedexp.evaluation.score_cache import configuration_key
from embedexp.evaluation.tasks import build_tasks
from embedexp.model.build import build_embedder

from .conftest import TINY_OVERRIDES, compose_config


def test_key_changes_when_an_adapter_is_merged_into_any_frozen_layer(tmp_path):
    cfg = compose_config("train", TINY_OVERRIDES, tmp_path)
    tasks = build_tasks(cfg.tasks)
    embedder = build_embedder(cfg)
    before = configuration_key(embedder, tasks, "32")
    frozen = [(name, p) for name, p in embedder.model.named_parameters() if not p.requires_grad]
    name, weight = frozen[len(frozen) // 3]  # a tensor in the middle of the stack, as model.init_adapter merges
    with torch.no_grad():
        weight.add_(0.01)
    assert configuration_key(embedder, tasks, "32") != before, name
