"""Hydra's `instantiate` with the project's own errors: a target's ConfigError or DataError, not Hydra's wrapper."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from embedexp.core.errors import DataError, EmbedexpError, MissingTaskData


def instantiate_node(node, tasks_cfg: DictConfig | None = None):
    """`instantiate(node)`, raising the project's own error (not Hydra's wrapper) when a target raises one.

    A task whose data is missing is reported with its config key (`tasks.<key>`), found in `tasks_cfg` by name.
    """
    try:
        return instantiate(node)
    except InstantiationException as wrapper:
        error = wrapper.__cause__
        while isinstance(error, InstantiationException):  # nested targets (tasks inside the eval callback)
            error = error.__cause__
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


def missing_task_error(error: MissingTaskData, tasks_cfg: DictConfig | None) -> DataError:
    """The missing-data error naming the task's config key and how to mark it optional."""
    keys = [key for key, node in (tasks_cfg or {}).items() if node and node.get("name") == error.task_name]
    key = f"tasks.{keys[0]}" if keys else f"the tasks entry of {error.task_name}"
    return DataError(
        f"{key}: data file {error.path} not found (task {error.task_name}). {error.hint} "
        f"To score without it, mark it optional: {key}.optional=true (the run then records the smaller task set)."
    )
