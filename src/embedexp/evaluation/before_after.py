"""The before-and-after table of a fine-tuning run: V-measure per task, zero-shot vs fine-tuned, on the console."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from embedexp.evaluation.clustering import MEAN_KEY


def print_before_after(before: dict[str, float], after: dict[str, float], console: Console | None = None) -> None:
    """Print a table of V-measure per task before and after fine-tuning, with the difference."""
    table = Table(title="Clustering V-measure (mteb): zero-shot vs fine-tuned")
    for column in ("task", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "task" else "right")
    tasks = [k for k in after if k != MEAN_KEY] + [MEAN_KEY]
    for task in tasks:
        if task in before and task in after:
            diff = after[task] - before[task]
            style = "bold" if task == MEAN_KEY else None
            table.add_row(task, f"{before[task]:.4f}", f"{after[task]:.4f}", f"{diff:+.4f}", style=style)
    (console or Console()).print(table)
