"""A quiet console: the third-party messages a user cannot act on, filtered at every command's entry point.

`NOISE` is the one list: each entry names where a message comes from (a warning category or a logger), the start of
its text, and why it is noise here. `quiet_console()` (called first by every `embedexp.cli` main) installs warning
filters and logging filters for exactly these messages, turns off transformers' weight-loading bar and W&B's banner
and run summary (its warnings and errors stay), and swallows transformers' import-time `[INFO] Running in WANDB
offline mode` print. Everything else still shows: embedexp's phases, progress and warnings (truncated texts, the
precision chosen), other libraries' warnings not listed here, and every error. `EMBEDEXP_VERBOSE=1` shows all.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass

VERBOSE_ENV = "EMBEDEXP_VERBOSE"


@dataclass(frozen=True)
class Noise:
    """One filtered message: a warning category (`source="warning"`) or a logger name, and its text's start."""

    source: str
    message: str
    why: str
    category: type[Warning] = Warning


NOISE: tuple[Noise, ...] = (
    Noise(
        "warning",
        "`is_gradient_checkpointing` is deprecated",
        "transformers 5 deprecates the attribute that peft and Lightning read, not embedexp's code",
        FutureWarning,
    ),
    Noise(
        "warning",
        "`isinstance(treespec, LeafSpec)` is deprecated",
        "torch 2.13 deprecates a pytree class Lightning still uses internally",
        FutureWarning,
    ),
    Noise(
        "warning",
        "Total length of `",
        "Lightning warns about the empty validation loader of runs without val_pairs (val/loss off by design)",
    ),
    Noise("lightning.pytorch.utilities.rank_zero", "💡 Tip: ", "Lightning advertises its litlogger service"),
    Noise("lightning.pytorch.utilities.rank_zero", "GPU available: ", "device inventory; embedexp logs the device"),
    Noise("lightning.pytorch.utilities.rank_zero", "TPU available: ", "device inventory; embedexp logs the device"),
    Noise(
        "lightning.pytorch.utilities.rank_zero",
        "Using bfloat16 Automatic Mixed Precision",
        "embedexp logs the precision it chose and why (`trainer.precision=auto -> ...`)",
    ),
    Noise(
        "lightning.pytorch.utilities.rank_zero",
        "`Trainer.fit` stopped: `max_",
        "the planned end of training; embedexp prints the result next",
    ),
    Noise("lightning.fabric.utilities.seed", "Seed set to ", "the seed is in the config and in metrics.json"),
    Noise(
        "wandb",
        "The anonymous setting has no effect and will be removed in a future version.",
        "Lightning's WandbLogger passes `anonymous=None` to every wandb.init (W&B entries: the whole text)",
    ),
)

_installed: list = []


def verbose() -> bool:
    """`EMBEDEXP_VERBOSE=1` (or true/yes): show every third-party message."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes"}


def is_noise(source: str, message: str) -> bool:
    """Whether a message from `source` (a logger name, `warning` or `wandb`) is listed in `NOISE`."""
    return any(source == noise.source and message.lstrip().startswith(noise.message) for noise in NOISE)


class NoiseFilter(logging.Filter):
    """Drops the records of one logger whose message starts like one of that logger's `NOISE` entries."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for listed noise."""
        return not is_noise(record.name, record.getMessage())


def quiet_console() -> None:
    """Filter `NOISE` for this process (idempotent); nothing with `EMBEDEXP_VERBOSE=1`."""
    if verbose() or _installed:
        return
    for noise in NOISE:
        if noise.source == "warning":
            warnings.filterwarnings("ignore", message=re.escape(noise.message), category=noise.category)
    noise_filter = NoiseFilter()
    for name in {n.source for n in NOISE} - {"warning", "wandb"}:
        logging.getLogger(name).addFilter(noise_filter)
        _installed.append(name)
    os.environ.setdefault("WANDB_QUIET", "true")  # no banner and run summary; warnings and errors still print
    _quiet_wandb_warnings()
    _quiet_transformers()
    _installed.append("done")


def _quiet_wandb_warnings() -> None:
    """W&B prints each `repeat=False` warning once per process: mark the listed ones as already shown."""
    from embedexp.core.compat import mark_wandb_warnings_shown

    mark_wandb_warnings_shown([noise.message for noise in NOISE if noise.source == "wandb"])


class _SilentImport(importlib.abc.MetaPathFinder):
    """Runs the import of the modules in `names` with stdout swallowed (their import-time prints)."""

    def __init__(self, names: set[str]) -> None:
        """`names`: fully qualified module names."""
        self.names = names

    def find_spec(self, fullname, path, target=None):
        """The normal spec of a listed module, with a loader whose `exec_module` prints nothing."""
        if fullname not in self.names:
            return None
        self.names = self.names - {fullname}  # find the real spec without finding ourselves
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _SilentLoader(spec.loader)
        return spec


class _SilentLoader(importlib.abc.Loader):
    """Delegates to a loader, with stdout swallowed while the module runs."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        """`loader`: the module's own loader."""
        self.loader = loader

    def create_module(self, spec):
        """The loader's own module object."""
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        """Run the module without its prints."""
        with contextlib.redirect_stdout(io.StringIO()):
            self.loader.exec_module(module)


IMPORT_PRINTS = {"transformers.integrations.integration_utils"}  # `[INFO] Running in WANDB offline mode` on import


def silence_import_prints() -> None:
    """Swallow the import-time prints of `IMPORT_PRINTS` (unless EMBEDEXP_VERBOSE=1); before their first import."""
    if verbose() or any(isinstance(finder, _SilentImport) for finder in sys.meta_path):
        return
    if not IMPORT_PRINTS <= set(sys.modules):
        sys.meta_path.insert(0, _SilentImport(IMPORT_PRINTS))


def _quiet_transformers() -> None:
    """transformers' weight-loading bar off; its import-time print swallowed."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    silence_import_prints()
