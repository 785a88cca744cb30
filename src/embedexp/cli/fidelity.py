"""`python -m embedexp fidelity <multirun folder> ...`: callback scores vs larger evaluations (conf/fidelity.yaml)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from embedexp.analysis.report.fidelity import build_fidelity
from embedexp.analysis.report.result_file import write_fidelity_result
from embedexp.cli.arguments import print_written, run_with_folder_arguments, sweep_dirs, typed_command
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
    if cfg.get("result_file"):  # the table the docs render (embedexp.core.results)
        title = f"callback fidelity of {', '.join(Path(d).name for d in dirs)}"
        paths["result"] = write_fidelity_result(paths, cfg.result_file, typed_command("fidelity"), title)
    print_written(paths, "fidelity")


def main() -> None:
    """Console entry point: `python -m embedexp fidelity <folder> ...` or `sweep_dir=<folder>`."""
    run_with_folder_arguments(_hydra_main)


if __name__ == "__main__":
    main()
