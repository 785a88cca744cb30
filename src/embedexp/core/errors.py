"""The project's error types: each names the config key, file or row that is wrong."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class EmbedexpError(Exception):
    """Base class for errors a user can fix by changing config or input."""


class ConfigError(EmbedexpError, ValueError):
    """A config value is invalid; the message names the key."""


class DataError(EmbedexpError, ValueError):
    """An input file or dataset is invalid; the message names the file and row or column."""


class MissingTaskData(DataError):
    """A clustering task's data file is absent (and the task is not marked `optional`)."""

    def __init__(self, task_name: str, path: str, hint: str = "") -> None:
        """Remember the task and file; `hint` says how to get the data."""
        self.task_name, self.path, self.hint = task_name, path, hint
        super().__init__(f"task {task_name}: data file {path} not found. {hint}".strip())


def log_to_files(log: logging.Logger, message: str) -> None:
    """Write an error to the log files only (a run's `<task>.log`), not to the console."""
    record = log.makeRecord(log.name, logging.ERROR, "", 0, message, None, None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextlib.contextmanager
def exit_on_error(log: logging.Logger) -> Iterator[None]:
    """In an entry point: exit with one line `error: <message>` for an `EmbedexpError` instead of a traceback (the
    run's log file records it too)."""
    try:
        yield
    except EmbedexpError as err:
        log_to_files(log, str(err))
        raise SystemExit(f"error: {err}") from None
