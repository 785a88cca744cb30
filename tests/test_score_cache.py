"""The zero-shot score cache's key: a changed model, pooling option or prompt option never gets another's scores."""

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


def test_key_tells_every_pooling_and_prompt_option_apart(tmp_path):
    user_pooling = ["pooling._target_=tests.user_poolings.PowerMeanPooling", "+pooling.power=1", "prompt=echo"]
    user_pooling += ["~pooling.layer", "~pooling.layer_norm"]  # options of mean.yaml this user pooling does not take
    variants = {
        "as configured": [],
        "pooling.power": ["pooling.power=3"],
        "pooling.exclude_prompt": ["pooling.exclude_prompt=true"],
        "prompt.pool_copy": ["prompt.pool_copy=first"],
        "prompt.append_eos": ["prompt.append_eos=true"],
    }
    tasks = build_tasks(compose_config("train", TINY_OVERRIDES, tmp_path).tasks)

    def key(overrides: list[str]) -> str:
        torch.manual_seed(0)  # the same fresh LoRA weights every time: only the option differs
        cfg = compose_config("train", TINY_OVERRIDES + user_pooling + overrides, tmp_path)
        return configuration_key(build_embedder(cfg), tasks, "32")

    keys = {option: key(overrides) for option, overrides in variants.items()}
    assert len(set(keys.values())) == len(variants), keys
    assert key(["prompt.name=renamed"]) == keys["as configured"]  # a name is not an option


def test_fresh_adapters_of_every_seed_share_the_zero_shot_key_until_they_train(tmp_path):
    cfg = compose_config("train", TINY_OVERRIDES, tmp_path)
    tasks = build_tasks(cfg.tasks)
    embedders = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # another seed: other random LoRA A matrices, B still zero
        embedders.append(build_embedder(cfg))
    first, second = (configuration_key(embedder, tasks, "32") for embedder in embedders)
    assert first == second
    with torch.no_grad():  # one training step's worth: the adapter now changes the output
        next(p for name, p in embedders[1].model.named_parameters() if "lora_B" in name).add_(0.01)
    assert configuration_key(embedders[1], tasks, "32") != first
