"""Every config group member composes; the ones that run offline also instantiate."""

from __future__ import annotations

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate

from embedexp.core.config import CONFIG_DIR
from embedexp.core.errors import ConfigError
from embedexp.model.pooling import Pooling
from embedexp.model.prompts import PromptTemplate

from .conftest import TINY_OVERRIDES, compose_config


def options(group: str) -> list[str]:
    """Names of the YAML files of a config group."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("name", options("pooling"))
def test_pooling_options_instantiate(name, tmp_path):
    sized = {"hidden_size": 64} if name == "latent_attention" else {}
    pooling = instantiate(compose_config("train", [f"pooling={name}"], tmp_path).pooling, **sized)
    assert isinstance(pooling, Pooling) and pooling.name == name


@pytest.mark.parametrize("name", options("prompt"))
def test_prompt_options_instantiate(name, tmp_path):
    prompt = instantiate(compose_config("train", [f"prompt={name}"], tmp_path).prompt)
    assert isinstance(prompt, PromptTemplate) and prompt.name == name and "{text}" in prompt.template


def test_prompt_groups_cover_the_paper_prompts():
    assert {"none", "eol", "pcot", "ke", "cluster", "cluster_short", "summarize", "classify", "question"} <= set(
        options("prompt")
    )
    assert {"mean", "last", "weighted_mean", "max", "concat", "attention"} <= set(options("pooling"))


@pytest.mark.parametrize("name", options("model"))
def test_model_options_compose(name, tmp_path):
    cfg = compose_config("train", [f"model={name}"], tmp_path)
    assert cfg.model.backbone._target_.startswith("embedexp.model.backbone.")
    assert cfg.model.max_length > 0 and cfg.model.padding_side in ("left", "right")


def test_tiny_model_instantiates(tmp_path):
    backbone = instantiate(compose_config("train", ["model=tiny"], tmp_path).model.backbone)
    assert backbone.model.config.num_hidden_layers == 2


@pytest.mark.parametrize("name", options("data"))
def test_data_options_compose(name, tmp_path):
    from hydra.utils import get_class

    from embedexp.data.datamodule import PairDataModule

    cfg = compose_config("train", [f"data={name}"], tmp_path)
    assert issubclass(get_class(cfg.data._target_), PairDataModule)  # data=mixture: MixtureDataModule


@pytest.mark.parametrize("name", options("tasks"))
def test_task_lists_compose(name, tmp_path):
    cfg = compose_config("train", [f"tasks={name}"], tmp_path)
    assert len(cfg.tasks) >= 2


def test_offline_tasks_instantiate(tmp_path):
    from embedexp.evaluation.tasks import build_tasks

    tasks = build_tasks(compose_config("train", [], tmp_path).tasks)
    names = [t.metadata.name for t in tasks]
    assert len(names) == 5 and "DebianShortDescSectionClustering" in names  # the shared data is beside the checkout
    for task in tasks:
        task.load_data()
        assert len(task.dataset["test"]) > 100


@pytest.mark.parametrize("group", ["logger", "callbacks", "trainer"])
def test_runtime_groups_instantiate(group, tmp_path):
    for name in options(group):
        if group == "trainer" and name in GPU_TRAINERS:
            continue  # need GPUs; compose in tests/test_sweeps.py
        cfg = compose_config("train", TINY_OVERRIDES + [f"{group}={name}"], tmp_path)
        node = cfg[group]
        if group == "trainer":
            assert instantiate(node) is not None
        else:
            built = [instantiate(v) for v in (node or {}).values()]
            assert all(obj is not None for obj in built)
    assert compose_config("train", ["trainer=gpu"], tmp_path).trainer.accelerator == "gpu"


GPU_TRAINERS = {"gpu", "ddp", "fsdp", "deepspeed"}


@pytest.mark.parametrize("name", options("experiment"))
def test_experiments_compose(name, tmp_path):
    cfg = compose_config("train", [f"experiment={name}"], tmp_path)
    assert cfg.task_name


def test_eval_config_composes(tmp_path):
    cfg = compose_config("eval", ["model=tiny", "tasks=tiny"], tmp_path)
    assert cfg.adapter_path is None and "debian_short" in cfg.tasks


def test_unknown_option_is_a_clear_error(tmp_path):
    with pytest.raises(MissingConfigException, match="pooling/median"):
        compose_config("train", ["pooling=median"], tmp_path)


def test_unknown_lora_target_names_the_key(tmp_path):
    from embedexp.model.build import build_embedder

    cfg = compose_config("train", TINY_OVERRIDES + ["model.lora.target_modules=[qkv_proj]"], tmp_path)
    with pytest.raises(ConfigError, match=r"model.lora.target_modules: \['qkv_proj'\] not found.*q_proj"):
        build_embedder(cfg)


def test_offline_1000_is_tasks_offline_at_the_fidelity_studys_callback_size(tmp_path):
    offline = compose_config("train", ["tasks=offline"], tmp_path / "a").tasks
    sized = compose_config("train", ["tasks=offline_1000"], tmp_path / "b").tasks
    assert set(sized) == set(offline) and all(sized[name].n_docs == 1000 for name in sized)
    for name in offline:  # the same sources, labels and seed: only the size differs
        assert {k: v for k, v in sized[name].items() if k != "n_docs"} == {
            k: v for k, v in offline[name].items() if k != "n_docs"
        }
