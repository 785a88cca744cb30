"""Results of sweeps: collect multirun job folders, mean ± 95 % CI over seeds, tables, bar chart, best configuration.

`python -m embedexp.report <multirun folder>` writes the report (see `embedexp.report.command`).
"""

from embedexp.report.collect import RunRecord, collect_runs, runs_frame
from embedexp.report.console import print_before_after
from embedexp.report.stats import confidence_interval, summarize

__all__ = ["RunRecord", "collect_runs", "confidence_interval", "print_before_after", "runs_frame", "summarize"]
