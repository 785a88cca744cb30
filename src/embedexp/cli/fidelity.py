"""`python -m embedexp fidelity <multirun folder> ...`: callback scores vs larger evaluations (conf/fidelity.yaml)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedexp.analysis.report.fidelity import build_fidelity
from embedexp.cli.arguments import print_written, run_with_folder_arguments, sweep_dirs
from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="fidelity")
def _hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: build the fidelity files and print the table."""
    quiet_console()
    dirs = sweep_dirs(cfg.sweep_dir)
    with exit_on_error(log):
        paths = build_fidelity(dirs, cfg)
    print_written(paths, "fidelity")


def main() -> None:
    """Console entry point: `python -m embedexp fidelity <folder> ...` or `sweep_dir=<folder>`."""
    run_with_folder_arguments(_hydra_main)


if __name__ == "__main__":
    main()
