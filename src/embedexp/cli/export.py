"""`python -m embedexp export run_dir=outputs/train/runs/<run> [formats=[adapter,merged,sentence_transformers]]`."""

from __future__ import annotations

from embedexp.cli.runner import hydra_command
from embedexp.core.run_setup import RunSetup
from embedexp.export.core import export_from_config


def export(run: RunSetup) -> None:
    """Export, print where each form went and its self-check cosine."""
    for form, result in export_from_config(run.cfg).items():
        print(f"{form:22s} {result['path']}  self-check min cosine {result['min_cosine']:.7f}")


main = hydra_command("export", export)


if __name__ == "__main__":
    main()
