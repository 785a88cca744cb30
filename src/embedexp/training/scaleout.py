"""Helpers for the distributed trainer configs (conf/trainer/fsdp.yaml)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable

import torch

from embedexp.core.errors import ConfigError

log = logging.getLogger(__name__)


def module_classes(names: Iterable[str], required: bool = False) -> set[type[torch.nn.Module]]:
    """Import `package.module.ClassName` strings into a set of classes (FSDP's auto-wrap policy).

    Classes this transformers version lacks are skipped (a config can list every supported architecture); with
    `required` a missing class is an error. An empty result is an error: FSDP would wrap nothing.
    """
    classes = set()
    for name in names:
        module_name, _, class_name = name.rpartition(".")
        try:
            classes.add(getattr(importlib.import_module(module_name), class_name))
        except (ImportError, AttributeError) as err:
            if required:
                raise ConfigError(f"trainer.strategy.auto_wrap_policy: cannot import {name}: {err}") from err
            log.info("auto-wrap class %s not available here, skipped", name)
    if not classes:
        raise ConfigError("trainer.strategy.auto_wrap_policy: none of the listed decoder-layer classes imports")
    return classes
