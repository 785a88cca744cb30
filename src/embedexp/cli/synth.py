"""`python -m embedexp synth`: make synthetic positive pairs (conf/synth.yaml); `generator=` / `source=` shorthands."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from embedexp.core.config import CONFIG_DIR
from embedexp.core.console import quiet_console
from embedexp.core.errors import exit_on_error
from embedexp.synthesis.manifest import summary
from embedexp.synthesis.pipeline import expand_shorthands, synthesize

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="synth")
def _hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    quiet_console()
    with exit_on_error(log):
        manifest = synthesize(cfg)
    print(summary(manifest, cfg.paths.output_dir))


def main() -> None:
    """Console entry: expand the group shorthands, then run Hydra."""
    sys.argv = [sys.argv[0], *expand_shorthands(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
