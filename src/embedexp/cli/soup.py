"""`python -m embedexp soup runs=[<run>,<run>,...]`: average the runs' LoRA adapters (`embedexp.export.soup`) and score
the average through `eval`'s evaluator (conf/soup.yaml)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.cli.eval import score, take_run_settings
from embedexp.cli.runner import hydra_command
from embedexp.core.errors import ConfigError
from embedexp.core.run_setup import RunSetup
from embedexp.export.resolve import SOURCE_KEYS
from embedexp.export.soup import make_soup

ADAPTER = "adapter"


def run_list(cfg: DictConfig) -> list[str]:
    """`runs` as a list of folder names (one folder alone is not a soup)."""
    runs = OmegaConf.to_container(cfg.runs) if OmegaConf.is_config(cfg.runs) else cfg.runs
    if not isinstance(runs, list):
        raise ConfigError(f"runs={runs!r}: give a list of run folders, runs=[<run>,<run>]")
    return [str(run) for run in runs]


def prepare(cfg: DictConfig) -> None:
    """Refuse a model named besides `runs`; take the first run's tasks and eval settings unless given."""
    named = [key for key in SOURCE_KEYS if cfg.get(key)]
    if named:
        raise ConfigError(f"soup scores the average of runs=[...]: drop {', '.join(f'{k}=' for k in named)}")
    runs = run_list(cfg)
    if runs and (Path(runs[0]) / ".hydra" / "config.yaml").is_file():
        with open_dict(cfg):
            cfg.run_dir = runs[0]
        take_run_settings(cfg)
        with open_dict(cfg):
            cfg.run_dir = None
    with open_dict(cfg):
        cfg.label = cfg.get("label") or f"soup({', '.join(Path(run).name for run in runs)})"


def soup(run: RunSetup) -> float:
    """Average, save, score; returns the mean V-measure (for sweepers)."""
    cfg = run.cfg
    output = run.output_dir / ADAPTER
    weights = OmegaConf.to_container(cfg.weights) if OmegaConf.is_config(cfg.weights) else cfg.weights
    make_soup(cfg, run_list(cfg), output, weights, cfg.combination)
    with open_dict(cfg):
        cfg.adapter_path = str(output)
    return score(run)["clustering_mean"]


main = hydra_command("soup", soup, prepare=prepare)


if __name__ == "__main__":
    main()
