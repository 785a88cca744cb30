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


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """Build the error for an unknown registry name, listing the valid ones."""
    return ConfigError(f"unknown {kind} '{name}'; valid names: {', '.join(sorted(valid))}")


@contextlib.contextmanager
def exit_on_error(log: logging.Logger) -> Iterator[None]:
    """In an entry point: log an `EmbedexpError` and exit with `error: <message>` instead of a traceback."""
    try:
        yield
    except EmbedexpError as err:
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
