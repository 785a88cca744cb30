"""`python -m embedexp fidelity <multirun folder> ...`: callback scores vs larger evaluations (conf/fidelity.yaml)."""

from __future__ import annotations

from embedexp.analysis.report.fidelity import build_fidelity
from embedexp.analysis.report.result_file import write_fidelity_result
from embedexp.cli.arguments import positional_to_override, print_written, sweep_dirs, typed_command
from embedexp.cli.runner import hydra_command
from embedexp.core.run_setup import RunSetup


def fidelity(run: RunSetup) -> None:
    """Build the fidelity files and print the table."""
    cfg = run.cfg
    dirs = sweep_dirs(cfg.sweep_dir)
    built = build_fidelity(dirs, cfg)
    paths = built.paths
    if cfg.get("result_file"):  # the table the docs render (embedexp.core.results)
        title = f"callback fidelity: rho with n_docs={built.reference}, runs of {len(dirs)} folder(s)"
        command = typed_command("fidelity")
        paths["result"] = write_fidelity_result(paths, cfg.result_file, command, title, built.precision)
    print_written(paths, "fidelity")


# `python -m embedexp fidelity <folder> ...` or `sweep_dir=<folder>`
main = hydra_command("fidelity", fidelity, positional_to_override)


if __name__ == "__main__":
    main()
