"""`python -m embedexp export run_dir=outputs/train/runs/<run> [formats=[adapter,merged,sentence_transformers]]`."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error
from embedexp.export.core import export_from_config

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: export, print where each form went and its self-check cosine."""
    quiet_console()
    with exit_on_error(log):
        results = export_from_config(cfg)
    for form, result in results.items():
        print(f"{form:22s} {result['path']}  self-check min cosine {result['min_cosine']:.7f}")


if __name__ == "__main__":
    main()
