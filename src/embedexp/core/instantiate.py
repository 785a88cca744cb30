"""Hydra's `instantiate` with the project's own errors: a target's ConfigError or DataError, not Hydra's wrapper."""

from __future__ import annotations

import re

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from embedexp.core.errors import ConfigError, DataError, EmbedexpError, MissingTaskData

UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")
FULL_KEY = re.compile(r"full_key: (\S+)")


def instantiate_node(node, tasks_cfg: DictConfig | None = None):
    """`instantiate(node)`, raising the project's own error (not Hydra's wrapper) when a target raises one.

    A task whose data is missing is reported with its config key (`tasks.<key>`), found in `tasks_cfg` by name.
    """
    try:
        return instantiate(node)
    except InstantiationException as wrapper:
        error, innermost = wrapper.__cause__, wrapper
        while isinstance(error, InstantiationException):  # nested targets (tasks inside the eval callback)
            error, innermost = error.__cause__, error
        if isinstance(error, TypeError) and (unexpected := UNEXPECTED.search(str(innermost))):
            raise unknown_option_error(str(innermost), unexpected.group(1)) from None
        if isinstance(error, MissingTaskData):
            raise missing_task_error(error, tasks_cfg) from None
        if isinstance(error, EmbedexpError):
            raise error from None
        raise


def instantiate_group(group: DictConfig | None, tasks_cfg: DictConfig | None = None) -> list:
    """Instantiate every `_target_` entry of a group such as `callbacks` or `logger` (empty or missing: [])."""
    if not group:
        return []
    return [instantiate_node(node, tasks_cfg) for node in group.values() if node and "_target_" in node]


def unknown_option_error(message: str, option: str) -> ConfigError:
    """A key the target does not take (set for another option of its group, e.g. by an experiment): named, with
    the way to drop it."""
    where = FULL_KEY.search(message)
    key = f"{where.group(1)}.{option}" if where else option
    target = re.search(r"target '([\w.]+)'", message)
    return ConfigError(
        f"{key}: {target.group(1) if target else 'the target'} takes no option {option!r} (set for another choice of "
        f"this group, e.g. by an experiment); drop it with ~{key} or choose the option it belongs to"
    )


def missing_task_error(error: MissingTaskData, tasks_cfg: DictConfig | None) -> DataError:
    """The missing-data error naming the task's config key and how to mark it optional."""
    keys = [key for key, node in (tasks_cfg or {}).items() if node and node.get("name") == error.task_name]
    key = f"tasks.{keys[0]}" if keys else f"the tasks entry of {error.task_name}"
    return DataError(
        f"{key}: data file {error.path} not found (task {error.task_name}). {error.hint} "
        f"To score without it, mark it optional: {key}.optional=true (the run then records the smaller task set)."
    )
