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


@contextlib.contextmanager
def exit_on_error(log: logging.Logger) -> Iterator[None]:
    """In an entry point: log an `EmbedexpError` and exit with `error: <message>` instead of a traceback."""
    try:
        yield
    except EmbedexpError as err:
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
