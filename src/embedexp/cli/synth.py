"""`python -m embedexp synth`: make synthetic positive pairs (conf/synth.yaml); `generator=` / `source=` shorthands."""

from __future__ import annotations

from embedexp.cli.runner import hydra_command
from embedexp.core.run_setup import RunSetup
from embedexp.synthesis.manifest import summary
from embedexp.synthesis.pipeline import expand_shorthands, synthesize


def synth(run: RunSetup) -> None:
    """Synthesize and print the summary."""
    print(summary(synthesize(run.cfg), run.cfg.paths.output_dir))


main = hydra_command("synth", synth, expand_shorthands)


if __name__ == "__main__":
    main()
