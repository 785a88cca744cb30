"""Optuna searches over config groups: every option of a group (each YAML Hydra finds for it, a user folder's too)
is one categorical parameter, so a new option joins the search without editing a list (hydra-optuna-sweeper's
`custom_search_space`, set by conf/hparams_search/optuna.yaml)."""

from __future__ import annotations

from typing import Any

from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig


def group_options(cfg: DictConfig, group: str) -> list[str]:
    """The options of a config group on this run's search path (embedexp's configs, then `hydra.searchpath`)."""
    searchpath = list(cfg.hydra.get("searchpath") or [])
    overrides = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    loader = GlobalHydra.instance().config_loader()
    return loader.get_group_options(group, config_name=cfg.hydra.job.config_name, overrides=overrides)


def suggest_group_options(cfg: DictConfig, trial: Any) -> None:
    """For each group of `search_groups`, let the trial pick one of its options (less the group's `exclude` list)."""
    for group, spec in (cfg.get("search_groups") or {}).items():
        exclude = set((spec or {}).get("exclude") or [])
        trial.suggest_categorical(group, [option for option in group_options(cfg, group) if option not in exclude])
