"""`python -m embedexp mine input=pairs.parquet`: add mined hard negatives to a pair file (conf/mine.yaml)."""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig

from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error
from embedexp.synthesis.mining import mine

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="mine")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: print the summary."""
    quiet_console()
    with exit_on_error(log):
        print(json.dumps(mine(cfg), indent=2))


if __name__ == "__main__":
    main()
