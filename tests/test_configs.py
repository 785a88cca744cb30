"""Every config group member composes; the ones that run offline also instantiate."""

from __future__ import annotations

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from embedexp.core.config import CONFIG_DIR
from embedexp.core.errors import ConfigError
from embedexp.model.pooling import Pooling
from embedexp.model.prompts import PromptTemplate

from .conftest import TINY_OVERRIDES, compose_config


def options(group: str) -> list[str]:
    """Names of the YAML files of a config group."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("name", options("pooling"))
def test_pooling_options_instantiate_with_their_yaml_options_as_config(name, tmp_path):
    node = compose_config("train", [f"pooling={name}"], tmp_path).pooling
    sized = {"hidden_size": 64} if "hidden_size" in node else {}
    pooling = instantiate(node, **sized)
    assert isinstance(pooling, Pooling)
    options_in_yaml = {key: value for key, value in OmegaConf.to_container(node).items() if key != "_target_"}
    assert pooling.get_config_dict() == {**options_in_yaml, **sized}  # saved, exported and cached as configured


@pytest.mark.parametrize("name", options("prompt"))
def test_prompt_options_instantiate(name, tmp_path):
    prompt = instantiate(compose_config("train", [f"prompt={name}"], tmp_path).prompt)
    assert isinstance(prompt, PromptTemplate) and prompt.name == name and "{text}" in prompt.template


def test_prompt_groups_cover_the_paper_prompts():
    assert {"none", "eol", "pcot", "ke", "cluster", "cluster_short", "summarize", "classify", "question"} <= set(
        options("prompt")
    )
    assert {"mean", "last", "weighted_mean", "max", "concat", "final_token_attention"} <= set(options("pooling"))


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
            import lightning as L

            trainer = instantiate(node)  # a Lightning Trainer that took the group's settings
            assert isinstance(trainer, L.Trainer) and (trainer.max_epochs, trainer.max_steps) == (
                node.max_epochs,
                node.max_steps,
            )
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


def test_unknown_option_is_a_clear_error_listing_the_options_of_every_config_folder(tmp_path):
    (tmp_path / "my_conf" / "pooling").mkdir(parents=True)
    (tmp_path / "my_conf" / "pooling" / "power_mean.yaml").write_text("_target_: my_poolings.PowerMeanPooling\n")
    with pytest.raises(MissingConfigException, match="pooling/median") as error:
        compose_config("train", ["pooling=median", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"], tmp_path)
    listed = str(error.value).split("Available options in 'pooling':")[1].split("Config search path")[0].split()
    assert set(listed) == set(options("pooling")) | {"power_mean"}


def test_unknown_lora_target_names_the_key(tmp_path):
    from embedexp.model.build import build_embedder

    cfg = compose_config("train", TINY_OVERRIDES + ["model.lora.target_modules=[qkv_proj]"], tmp_path)
    with pytest.raises(ConfigError, match=r"model.lora.target_modules: \['qkv_proj'\] not found.*q_proj"):
        build_embedder(cfg)


@pytest.mark.parametrize("config", ["train", "eval", "fidelity"])
@pytest.mark.parametrize("name", [n for n in options("tasks") if not n.startswith("mteb")])
def test_every_local_task_can_be_made_optional_in_every_command(config, name, tmp_path):
    """The missing-data error's hint (`tasks.<key>.optional=true`) works in every task set and command."""
    tasks = compose_config(config, [f"tasks={name}"], tmp_path).tasks
    keys = [key for key, node in tasks.items() if node is not None]
    relaxed = compose_config(config, [f"tasks={name}", *(f"tasks.{key}.optional=true" for key in keys)], tmp_path)
    assert all(relaxed.tasks[key].optional is True for key in keys)


@pytest.mark.parametrize("name", ["offline_full", "offline_1000", "offline_debian", "tiny", "smoke"])
def test_task_sets_extend_tasks_offline(name, tmp_path):
    """One definition per task: every local task set takes its sources, labels and seed from tasks=offline."""
    offline = compose_config("train", ["tasks=offline"], tmp_path).tasks
    sized = ("n_docs", "n_labels", "n_sections", "n_kmeans_runs")
    for key, node in compose_config("train", [f"tasks={name}"], tmp_path).tasks.items():
        if node is not None:
            assert {k: v for k, v in node.items() if k not in sized} == {
                k: v for k, v in offline[key].items() if k not in sized
            }, key


ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}


@pytest.mark.parametrize(
    "name, adapted", [("attention", ATTENTION), ("all_linear", ATTENTION | {"gate_proj", "up_proj", "down_proj"})]
)
def test_lora_placement_options_choose_the_adapted_linear_layers(tmp_path, name, adapted):
    """lora=attention adapts the attention projections only, lora=all_linear every linear layer of a block."""
    from embedexp.model.build import build_embedder

    cfg = compose_config("train", TINY_OVERRIDES + [f"lora={name}", "model.lora.last_n_layers=1"], tmp_path)
    adapters = [n for n, p in build_embedder(cfg).named_parameters() if p.requires_grad and "lora_A" in n]
    assert {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in adapters} == adapted
    assert {n.split("layers.")[1].split(".")[0] for n in adapters} == {"1"}  # the last of the tiny model's 2 layers
