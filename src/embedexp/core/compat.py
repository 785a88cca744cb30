"""Every place embedexp reaches into another library's private (underscored or undocumented) attributes.

Each function wraps one such use, says what it reads or writes and why no public API does, and names the versions it
was tested with (the caps in pyproject.toml: raise a cap only after tests/test_compat.py and `make test` pass on the
newer release). Nothing else in embedexp touches these attributes, so an upgrade that renames one breaks here, in one
named function, and in its test. The libraries are imported lazily: importing this module costs nothing.

Tested with transformers 5.24, lightning 2.6.6, wandb 0.31, mteb 2.26 (tokenizers 0.23 and sentence-transformers 6.2
are used through their public APIs only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def attn_implementation(model_or_config: Any) -> str | None:
    """The attention implementation (`eager`, `sdpa`, ...) a transformers model or config runs with, or None.

    transformers (4.56-5.24) keeps it in `config._attn_implementation`; the public `set_attn_implementation` has no
    getter. embedexp reads it to know whether attention weights can be captured and to record it in export manifests.
    """
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "_attn_implementation", None)


def swap_attn_implementation(model: Any, name: str | None) -> str | None:
    """Make a transformers model's attention modules run `name` (None: unchanged); returns the one it replaced.

    transformers (5.24) reads `config._attn_implementation` at every attention call; the public
    `set_attn_implementation` also validates and walks every submodule, too slow to call twice per training step. The
    frozen-prefix cache swaps it around its call of the frozen layers only (`embedexp.model.packing`).
    """
    previous = attn_implementation(model)
    if name is not None:
        model.config._attn_implementation = name
    return previous


def causal_flag_modules(decoder: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention modules of a decoder that carry transformers' own `is_causal` flag.

    transformers 5 (tested 5.0-5.24: llama, mistral, qwen2/3, gemma3) gives each `*Attention` module an undocumented
    `is_causal` attribute that SDPA falls back to when no `is_causal` kwarg arrives; bidirectional attention switches it
    together with the documented `config.is_causal`.
    """
    return [m for m in decoder.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "is_causal")]


def set_causal_flags(modules: list[torch.nn.Module], causal: bool) -> None:
    """Set the `is_causal` flag of the modules from `causal_flag_modules` (transformers 5.0-5.24)."""
    for module in modules:
        module.is_causal = causal


def distributed_sampler_requested(trainer: Any) -> bool:
    """Whether a Lightning Trainer will inject a `DistributedSampler` (`Trainer(use_distributed_sampler=...)`).

    The Trainer keeps the flag only on `trainer._accelerator_connector.use_distributed_sampler` (lightning 2.4-2.6);
    embedexp's data module shards its own batches and refuses the flag under DDP. False when there is no Trainer.
    """
    return bool(getattr(getattr(trainer, "_accelerator_connector", None), "use_distributed_sampler", False))


def started_experiment(logger: Any) -> Any:
    """The run behind a Lightning logger if it has been started, else None, without starting one.

    `WandbLogger.experiment` (lightning 2.4-2.6) creates a W&B run when none exists; `logger._experiment` is the run
    or None. embedexp finishes started runs with the training status and exit code (wandb 0.18-0.31).
    """
    return getattr(logger, "_experiment", None)


def collect_rng_states() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states, as Lightning saves them (`lightning.fabric.utilities.seed`).

    `_collect_rng_states` / `_set_rng_states` are private helpers (lightning 2.4-2.6); embedexp stores their result
    in its checkpoints so a resumed run draws the same random numbers.
    """
    from lightning.fabric.utilities.seed import _collect_rng_states

    return _collect_rng_states()


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of `collect_rng_states` (lightning's private `_set_rng_states`, 2.4-2.6)."""
    from lightning.fabric.utilities.seed import _set_rng_states

    _set_rng_states(states)


def mark_wandb_warnings_shown(messages: list[str]) -> None:
    """Make W&B treat these `repeat=False` warnings as already printed in this process (a quiet console).

    `wandb.termwarn(message, repeat=False)` skips a message whose styled text (`WARNING <message>`) is in
    `wandb.errors.term._printed_messages` (wandb 0.18-0.31); no public setting silences one warning
    (`show_warnings=False` silences all).
    """
    from wandb.errors import term

    printed = getattr(term, "_printed_messages", None)
    if isinstance(printed, set):
        printed.update(f"{term.WARN_STRING} {message}" for message in messages)


def reset_task_rngs(tasks: list[Any]) -> None:
    """Give each mteb task fresh bootstrap RNGs from its seed, as `AbsTask.__init__(seed)` made them.

    mteb (2.0-2.26) draws the clustering bootstrap samples from `task.rng_state` (a `random.Random`; `task.np_rng` for
    numpy draws), created once in `AbsTask.__init__` and advanced by every evaluation; no public method resets them.
    embedexp resets them before each scoring so a score depends on the embeddings alone, not on how many evaluations
    ran before (a resumed run scores exactly like an uninterrupted one).
    """
    import random

    import numpy as np

    for task in tasks:
        task.rng_state, task.np_rng = random.Random(task.seed), np.random.default_rng(task.seed)
