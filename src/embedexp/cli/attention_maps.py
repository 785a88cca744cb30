"""`python -m embedexp attention_maps`: where the final token looks, per model and prompt (conf/attention_maps.yaml)."""

from __future__ import annotations

from embedexp.analysis.attention_maps.run import run_analysis
from embedexp.cli.arguments import typed_command
from embedexp.cli.runner import hydra_command
from embedexp.core.run_setup import RunSetup


def analyse(run: RunSetup) -> None:
    """Analyse and write the attention maps (and the result file, naming this command, with `result_file=`)."""
    run_analysis(run.cfg, typed_command("attention_maps"))


main = hydra_command("attention_maps", analyse)


if __name__ == "__main__":
    main()
