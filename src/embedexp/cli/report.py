"""`python -m embedexp report <multirun folder> ...`: mean ± 95 % CI tables and plot (conf/report.yaml)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedexp.analysis.report.build import build_report
from embedexp.cli.arguments import print_written, run_with_folder_arguments, sweep_dirs
from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="report")
def _hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: build the report and print the Markdown table."""
    quiet_console()
    dirs = sweep_dirs(cfg.sweep_dir)
    with exit_on_error(log):
        paths = build_report(
            dirs,
            cfg.get("out_dir"),
            list(cfg.exclude_keys),
            cfg.seed_key,
            cfg.confidence,
            list(cfg.stages),
            cfg.get("title"),
            cfg.plot,
            cfg.get("read_wandb", True),
            list(cfg.get("baselines") or []),
        )
    print_written(paths, "report")


def main() -> None:
    """Console entry point: `python -m embedexp report <folder> ...` or `sweep_dir=<folder>`."""
    run_with_folder_arguments(_hydra_main)


if __name__ == "__main__":
    main()
