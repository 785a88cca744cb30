"""`python -m embedexp report <multirun folder> ...`: mean ± 95 % CI tables and plot (conf/report.yaml)."""

from __future__ import annotations

from pathlib import Path

from embedexp.analysis.report.build import build_report
from embedexp.analysis.report.result_file import write_report_result
from embedexp.cli.arguments import positional_to_override, print_written, sweep_dirs, typed_command
from embedexp.cli.runner import hydra_command
from embedexp.core.run_setup import RunSetup


def report(run: RunSetup) -> None:
    """Build the report and print the Markdown table."""
    cfg = run.cfg
    dirs = sweep_dirs(cfg.sweep_dir)
    paths = build_report(
        dirs,
        cfg.get("out_dir") or (cfg.paths.output_dir if len(dirs) > 1 else None),  # several sweeps: this run's folder
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


# `python -m embedexp report <folder> ...` or `sweep_dir=<folder>`
main = hydra_command("report", report, positional_to_override)


if __name__ == "__main__":
    main()
