"""Results of sweeps: collect multirun job folders, mean ± 95 % CI over seeds, tables, bar chart, best configuration.

`python -m embedexp report <multirun folder>` writes the report (`embedexp.cli.report`, logic in
`embedexp.analysis.report.build`); `python -m embedexp fidelity` compares the callback's scores with larger ones.
"""

from embedexp.analysis.report.collect import RunRecord, collect_runs, runs_frame
from embedexp.analysis.report.stats import confidence_interval, summarize

__all__ = ["RunRecord", "collect_runs", "confidence_interval", "runs_frame", "summarize"]
