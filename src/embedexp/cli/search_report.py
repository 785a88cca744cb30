"""`python -m embedexp search_report <step folder> ... [evals=[...]]`: every run of the recipe search as one result file
(`embedexp.analysis.report.search`, conf/search_report.yaml)."""

from __future__ import annotations

from embedexp.analysis.report.search import write_search_result
from embedexp.cli.arguments import positional_to_override, sweep_dirs, typed_command
from embedexp.cli.runner import hydra_command
from embedexp.core.results import read_result_table
from embedexp.core.run_setup import RunSetup


def search_report(run: RunSetup) -> None:
    """Write the result file and print its table."""
    cfg = run.cfg
    path = write_search_result(
        cfg.result_file,
        [str(d) for d in sweep_dirs(cfg.sweep_dir)],
        [str(e) for e in cfg.evals],
        typed_command("search_report"),
        cfg.title,
        list(cfg.transfer_tasks),
        list(cfg.in_domain_tasks),
        bool(cfg.keep_previous),
    )
    table = read_result_table(path)
    print(table.to_markdown())
    print(f"\n{table.notes}\nwritten to {path}")


main = hydra_command("search_report", search_report, positional_to_override)


if __name__ == "__main__":
    main()
