"""The one command shell and its checks at the door, a test per row of issue 28's table of first tries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from embedexp.analysis.report.build import build_report
from embedexp.cli.runner import run_job
from embedexp.core.config import CONFIG_DIR, PACKAGE_DIR, PROJECT_ROOT
from embedexp.core.errors import ConfigError, DataError
from embedexp.core.instantiate import instantiate_node
from embedexp.core.validation import check_config
from embedexp.data.pairs import PairFile
from embedexp.training.checkpointing import CheckpointOnInterrupt

from .conftest import TINY_OVERRIDES, compose_config
from .test_report import write_job

INTERNAL_GROUPS = {"hydra"}


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a YAML mapping's leaves (its defaults list left out)."""
    keys = []
    for key, value in node.items():
        if key != "defaults":
            keys += leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


def chosen_groups(experiment: str) -> set[str]:
    """The config groups an experiment chooses (`override /<group>: ...`), with those of experiments it includes."""
    raw = yaml.safe_load((CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text()) or {}
    groups = set()
    for entry in raw.get("defaults") or []:
        if isinstance(entry, dict):
            groups |= {str(key).split()[-1].lstrip("/") for key in entry}
        elif entry != "_self_":
            groups |= chosen_groups(str(entry))
    return groups


def test_experiments_set_only_keys_of_the_groups_they_choose():
    """An experiment's key under a group it does not choose must be one every option of that group has (else it
    leaks into the user's choice: experiment=smoke data=pairs_file got `text_field`)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):

        @cache
        def option(group: str, name: str) -> DictConfig:
            return compose(config_name="train", overrides=[f"{group}={name}"])

        leaks = []
        for path in sorted((CONFIG_DIR / "experiment").glob("*.yaml")):
            chosen = chosen_groups(path.stem) | INTERNAL_GROUPS
            for key in leaf_keys(yaml.safe_load(path.read_text()) or {}):
                group, parent, leaf = key.split(".")[0], *key.rpartition(".")[::2]
                if "." not in key or group in chosen or not (CONFIG_DIR / group).is_dir():
                    continue
                for option_file in sorted((CONFIG_DIR / group).glob("*.yaml")):
                    node = OmegaConf.select(option(group, option_file.stem), parent)
                    if not isinstance(node, DictConfig) or leaf not in node:
                        leaks.append(f"{path.stem}: {key} (not in {group}={option_file.stem})")
    assert leaks == []


def test_smoke_with_a_pair_file_reads_that_file(tmp_path):
    cfg = compose_config("train", ["experiment=smoke", "data=pairs_file", "data.source.path=x.csv"], tmp_path)
    source = instantiate_node(cfg.data).source
    assert isinstance(source, PairFile) and source.max_pairs == 64
    with pytest.raises(DataError, match=r"data.source.path=.*x.csv.*not found"):
        source.load()
    # a key an experiment set for another option of the group: named, with the way out
    leaked = compose_config("train", ["experiment=smoke", "data=text_file", "data.source.path=x.txt"], tmp_path)
    with pytest.raises(ConfigError, match=r"^data.source.max_pairs: .* takes no option 'max_pairs'.*~data"):
        instantiate_node(leaked.data)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc': expected an integer"),
        ("model.lora.r=-3", "model.lora.r=-3: must be >= 1"),
        ("optimizer.lr=0", "optimizer.lr=0: must be > 0"),
        ("num_threads=many", "num_threads='many': expected an integer or 'auto'"),
        ("pooling.layer=top", "pooling.layer='top': expected an integer"),
        ("data.sources.debtags.weight=-1", "data.sources.debtags.weight=-1: must be >= 0"),
        ("data.sources.debtags.max_per_category=0", "data.sources.debtags.max_per_category=0: must be >= 1"),
        ("data.total_pairs=many", "data.total_pairs='many': expected an integer"),
    ],
)
def test_config_values_are_checked_at_the_door(tmp_path, override, message):
    mixture = ["data=mixture", "+data/source@data.sources.debtags=debtags"] if override.startswith("data.") else []
    cfg = compose_config("train", ["experiment=smoke", *mixture, override], tmp_path)
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert str(error.value).startswith(message)


def test_a_run_that_never_started_leaves_no_folder(tmp_path):
    folder = tmp_path / "run"
    cfg = compose_config("train", [*TINY_OVERRIDES, "trainer.max_epochs=abc"], folder)
    (folder / ".hydra").mkdir(parents=True)  # what Hydra writes before the job's body
    (folder / "train.log").write_text("")
    with pytest.raises(SystemExit, match=r"^error: trainer.max_epochs='abc'"):
        run_job(cfg, lambda run: pytest.fail("the body ran"))
    assert not folder.exists()
    (folder / ".hydra").mkdir(parents=True)  # a folder of an earlier run (resumed into) stays whole
    (folder / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit):
        run_job(cfg, lambda run: None)
    assert (folder / "metrics.json").is_file()


def test_a_failed_run_keeps_its_folder_with_status_and_provenance(tmp_path):
    cfg = compose_config("eval", ["model=tiny", "tasks=tiny"], tmp_path)

    def body(run):
        raise DataError("pairs.csv: row 3 is empty")

    with pytest.raises(SystemExit, match=r"^error: pairs.csv: row 3 is empty$"):
        run_job(cfg, body)
    status = json.loads((tmp_path / "run_status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == "DataError: pairs.csv: row 3 is empty"
    assert json.loads((tmp_path / "provenance.json").read_text())["seed"] == 42
    assert run_job(cfg, lambda run: run.cfg.eval.precision) in ("32", "bf16")  # auto resolved for every command


def test_no_exception_checkpoint_before_the_first_step(tmp_path):
    saved = []
    trainer = SimpleNamespace(global_step=0, save_checkpoint=saved.append)
    callback = CheckpointOnInterrupt(str(tmp_path))
    callback.on_exception(trainer, None, TypeError("'>' not supported"))
    assert saved == []
    trainer.global_step = 3
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert saved == [tmp_path / "on_exception.ckpt"]


def test_missing_pair_columns_name_the_keys_that_choose_them(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"question": ["a"], "answer": ["b"]}).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        PairFile(str(path)).load()
    message = str(error.value)
    assert "missing column(s) ['text', 'text_pos']; columns are ['question', 'answer']" in message
    assert "data.source.text_column=<column> data.source.pos_column=<column>" in message


def test_a_group_the_command_lacks_is_one_clear_error(capsys):
    from embedexp.cli.eval import main

    for arg in ("experiment=smoke", "+experiment=smoke"):
        with pytest.raises(SystemExit) as error:
            main([arg])
        assert str(error.value).startswith("error: eval has no config group `experiment`"), error.value
        assert "model, pooling, prompt, tasks" in str(error.value)


def test_help_lists_the_users_own_options(tmp_path, capsys):
    from embedexp.cli.train import main

    (tmp_path / "pooling").mkdir()
    (tmp_path / "pooling" / "last_k_mean.yaml").write_text("# Mean of the last k tokens.\n_target_: x.Y\nk: 4\n")
    with pytest.raises(SystemExit) as done:
        main(["--help", f"hydra.searchpath=[file://{tmp_path}]"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(re.match(r"\s+last_k_mean\s+Mean of the last k tokens\.\s+\[/", line) for line in lines), lines
    assert any(re.match(r"\s+\* mean\s", line) for line in lines)  # embedexp's own options stay


def test_report_labels_sweeps_of_different_shapes(tmp_path):
    ablation, pooling = tmp_path / "2026-01-01_00-00-00", tmp_path / "2026-01-02_00-00-00"
    for num, (option, seed) in enumerate([("mean", 1), ("mean", 2), ("last", 1), ("last", 2)]):
        overrides = ["experiment=smoke", f"pooling={option}", f"seed={seed}"]
        write_job(ablation, num, overrides, {"TaskA": 0.3 + seed / 100}, seed=seed)
    for num, option in enumerate(["mean", "last_k_mean"]):  # the pooling tutorial's sweep: no seed override
        write_job(pooling, num, ["experiment=smoke", f"pooling={option}"], {"TaskA": 0.5}, seed=42)
    with pytest.raises(ConfigError, match="out_dir"):  # never silently into the older sweep's folder
        build_report([ablation, pooling])
    paths = build_report([ablation, pooling], tmp_path / "report", plot=False)
    table = pd.read_csv(paths["csv"]).set_index("config")
    assert table.loc[f"pooling=mean [sweep {ablation.name}]", "n"] == 2  # not pooled with the other sweep's seed
    assert table.loc[f"pooling=mean [sweep {pooling.name}]", "n"] == 1
    assert "## Sweeps of different shapes (2)" in paths["md"].read_text()
    later = tmp_path / "2026-01-03_00-00-00"  # the same shape (more seeds later): pooled, as the tutorial says
    write_job(later, 0, ["experiment=smoke", "pooling=mean", "seed=3"], {"TaskA": 0.33}, seed=3)
    paths = build_report([ablation, later], tmp_path / "pooled", plot=False)
    assert pd.read_csv(paths["csv"]).set_index("config").loc["pooling=mean", "n"] == 3


def test_only_the_runner_sets_sys_argv():
    setters = {
        str(path.relative_to(PACKAGE_DIR))
        for path in PACKAGE_DIR.rglob("*.py")
        if re.search(r"\bsys\.argv\s*=", path.read_text())
    }
    assert setters == {"cli/runner.py"}


@pytest.mark.slow  # a subprocess
def test_a_wrong_value_is_one_line_before_anything_loads(tmp_path):
    run_dir = tmp_path / "run"
    command = ["-m", "embedexp", "train", "experiment=smoke", "trainer.max_epochs=abc", f"hydra.run.dir={run_dir}"]
    result = subprocess.run([sys.executable, *command], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "max_epochs" in line]
    assert lines == ["error: trainer.max_epochs='abc': expected an integer or null"], result.stderr
    assert "Traceback" not in result.stderr and "contamination" not in result.stderr + result.stdout
    assert not run_dir.exists() and not Path(tmp_path / "outputs").exists()
