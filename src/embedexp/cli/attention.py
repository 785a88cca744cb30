"""`python -m embedexp attention`: where the final token looks, per model and prompt (conf/attention.yaml)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedexp.analysis.attention.run import run_analysis
from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="attention")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    quiet_console()
    with exit_on_error(log):
        run_analysis(cfg)


if __name__ == "__main__":
    main()
