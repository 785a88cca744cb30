"""`python -m embedexp report <multirun folder> ...`: mean ± 95 % CI tables and plot (conf/report.yaml)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from embedexp.analysis.report.build import build_report
from embedexp.analysis.report.result_file import write_report_result
from embedexp.cli.arguments import print_written, run_with_folder_arguments, sweep_dirs, typed_command
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
            exclude_keys=list(cfg.exclude_keys),
            seed_key=cfg.seed_key,
            confidence=cfg.confidence,
            stages=list(cfg.stages),
            title=cfg.get("title"),
            plot=cfg.plot,
            read_wandb=cfg.get("read_wandb", True),
            baselines=list(cfg.get("baselines") or []),
        )
    if cfg.get("result_file"):  # the table the docs render (embedexp.core.results)
        title = cfg.get("title") or f"report of {', '.join(Path(d).name for d in dirs)}"
        paths["result"] = write_report_result(paths, cfg.result_file, typed_command("report"), title, cfg.confidence)
    print_written(paths, "report")


def main() -> None:
    """Console entry point: `python -m embedexp report <folder> ...` or `sweep_dir=<folder>`."""
    run_with_folder_arguments(_hydra_main)


if __name__ == "__main__":
    main()
