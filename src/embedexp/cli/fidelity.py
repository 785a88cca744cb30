"""`python -m embedexp fidelity <multirun folder> ...`: callback scores vs larger evaluations (conf/fidelity.yaml)."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, ListConfig

from embedexp.analysis.report.fidelity import build_fidelity
from embedexp.cli.arguments import positional_to_override
from embedexp.core.config import CONFIG_DIR
from embedexp.core.errors import exit_on_error

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="fidelity")
def _hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point: build the fidelity files and print the table."""
    dirs = list(cfg.sweep_dir) if isinstance(cfg.sweep_dir, ListConfig | list) else [cfg.sweep_dir]
    with exit_on_error(log):
        paths = build_fidelity(dirs, cfg)
    print(paths["md"].read_text())
    print("fidelity written to " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    """Console entry point: `python -m embedexp fidelity <folder> ...` or `sweep_dir=<folder>`."""
    sys.argv = [sys.argv[0], *positional_to_override(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
