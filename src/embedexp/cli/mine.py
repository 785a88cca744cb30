"""`python -m embedexp mine input=pairs.parquet`: add mined hard negatives to a pair file (conf/mine.yaml)."""

from __future__ import annotations

import json

from embedexp.cli.runner import hydra_command
from embedexp.core.run_setup import RunSetup
from embedexp.synthesis.mining import mine


def mine_negatives(run: RunSetup) -> None:
    """Mine and print the summary."""
    print(json.dumps(mine(run.cfg), indent=2))


main = hydra_command("mine", mine_negatives)


if __name__ == "__main__":
    main()
