"""Each step of the recipe search (issue 29) is one `train -m experiment=recipe_search_<step>` command: every job of its
sweep composes, passes the checks at the door, and changes what the step says it searches."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from embedexp.core.config import CONFIG_DIR
from embedexp.core.validation import check_config

from .conftest import compose_config

STEPS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("recipe_search_*.yaml"))
SEARCHED = {  # the axes of the issue each step sweeps
    "recipe_search_data": {"data/source@data.sources.only"},
    "recipe_search_slope": {"data.total_pairs"},
    "recipe_search_loss": {"loss.temperature", "loss.symmetric"},
    "recipe_search_batch": {"data.batch_size", "optimizer.lr"},
    "recipe_search_lora": {"lora", "model.lora.last_n_layers", "optimizer.lr"},
    "recipe_search_prompt": {"prompt", "pooling.layer"},
    "recipe_search_pooling": {"pooling", "prompt"},
    "recipe_search_gemma": set(),
}


def sweep_jobs(step: str, tmp_path) -> list[list[str]]:
    """The overrides of every job `train -m experiment=<step>` runs (the basic sweeper's cartesian product)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        params = compose("train", [f"experiment={step}"], return_hydra_config=True).hydra.sweeper.params
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [list(job) for job in itertools.product(*axes)]


def test_every_step_of_the_issue_has_its_experiment():
    assert set(STEPS) == set(SEARCHED)


@pytest.mark.parametrize("step", STEPS)
def test_every_job_of_a_step_composes_and_passes_the_door(step, tmp_path):
    jobs = sweep_jobs(step, tmp_path)
    swept = {override.split("=", 1)[0] for job in jobs for override in job} - {"seed"}
    assert swept == SEARCHED[step]
    seeds = {override for job in jobs for override in job if override.startswith("seed=")}
    assert seeds == ({"seed=1", "seed=2", "seed=3"} if step == "recipe_search_gemma" else {"seed=1"})  # screen at one
    configs = [compose_config("train", [f"experiment={step}", *job], tmp_path) for job in jobs]
    for cfg in configs:
        check_config(cfg)
        assert cfg.tasks.debian_short.n_docs == 1000  # scored on tasks=offline_1000, as the recipe
    distinct = {OmegaConf.to_yaml({k: v for k, v in cfg.items() if k != "hydra"}) for cfg in configs}
    assert len(distinct) == len(jobs)  # each job trains something else


def test_the_data_step_trains_each_source_alone_at_the_same_pair_count(tmp_path):
    targets = set()
    for job in sweep_jobs("recipe_search_data", tmp_path):
        data = compose_config("train", ["experiment=recipe_search_data", *job], tmp_path).data
        assert list(data.sources) == ["only"] and data.total_pairs == 3000
        assert data.sources.only.get("exclude") or data.sources.only.get("drop_contaminated")
        targets.add(data.sources.only._target_.rsplit(".", 1)[-1])
    assert {"DebtagPairs", "ManSectionPairs", "DocstringPackagePairs", "PartOfSpeechPairs", "DebianPairs"} <= targets
