"""Where the Hydra configs live, where caches and shared data go, and the OmegaConf resolvers the configs use."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/embedexp (this file is core/config.py)
# The repository in a checkout (src/embedexp lies two levels below it); meaningless when installed from a wheel.
PROJECT_ROOT = PACKAGE_DIR.parents[1]
# A wheel ships the repository's conf/ as embedexp/conf; a checkout (editable install) reads conf/ itself.
PACKAGED_CONFIG_DIR = PACKAGE_DIR / "conf"
INSTALLED = PACKAGED_CONFIG_DIR.is_dir()
CONFIG_DIR = PACKAGED_CONFIG_DIR if INSTALLED else PROJECT_ROOT / "conf"


def checkout_root() -> Path | None:
    """The repository this package runs from (src/ layout with conf/ and pyproject.toml); None when installed."""
    if INSTALLED or PACKAGE_DIR.parent.name != "src":
        return None
    if (PROJECT_ROOT / "conf").is_dir() and (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT
    return None


def default_cache_dir() -> Path:
    """$EMBEDEXP_CACHE_DIR, else $EMBEDEXP_HOME, else the user cache dir (~/.cache/embedexp on Linux)."""
    for variable in ("EMBEDEXP_CACHE_DIR", "EMBEDEXP_HOME"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    return Path(platformdirs.user_cache_dir("embedexp", appauthor=False))


def default_shared_data_dir() -> Path:
    """$EMBEDEXP_SHARED_DATA, else ../shared/clustering_data beside a checkout, else <user data dir>/clustering_data."""
    if os.environ.get("EMBEDEXP_SHARED_DATA"):
        return Path(os.environ["EMBEDEXP_SHARED_DATA"]).expanduser()
    root = checkout_root()
    if root is not None:
        return root.parent / "shared" / "clustering_data"
    return Path(platformdirs.user_data_dir("embedexp", appauthor=False)) / "clustering_data"


# Offline by default: W&B writes runs locally unless the user sets WANDB_MODE=online.
os.environ.setdefault("WANDB_MODE", "offline")
# Rust tokenizers' own thread pool deadlocks in forked DataLoader workers; torch's threads do the parallel work.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def hydra_choices() -> dict[str, str]:
    """The option chosen in each config group of this Hydra run (`pooling: mean`, ...; Hydra's own groups left
    out), or {} outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {
        str(group): str(option)
        for group, option in choices.items()
        if option is not None and group != "hydra" and not str(group).startswith("hydra/")
    }


def run_name(task_name: str) -> str:
    """A run's readable name: this job's command-line overrides (`pooling=last,seed=1`), else the task name."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get().job.override_dirname or task_name
    return task_name


def run_group(task_name: str) -> str:
    """The group of a run's logger: `<task name>/<sweep folder>` for the jobs of one multirun, else the task name."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{task_name}/{Path(HydraConfig.get().sweep.dir).name}"
    return task_name


def show_progress_bar() -> bool:
    """Whether Lightning draws its progress bar: on a terminal; elsewhere the ProgressLog callback writes lines."""
    from embedexp.core.progress import progress_mode

    return progress_mode() == "bar"


for _name, _resolver in {
    "embedexp_cache_dir": lambda: str(default_cache_dir()),
    "embedexp_shared_data_dir": lambda: str(default_shared_data_dir()),
    "embedexp_run_name": run_name,
    "embedexp_run_group": run_group,
    "embedexp_progress_bar": show_progress_bar,
}.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
