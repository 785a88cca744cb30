"""Config values checked at the door: the type and range of every known key, before any model or data is loaded.

`RULES` is the one table: a dotted key, the type its value must have and the range it must lie in. `check_config`
reads the keys a composed config has (a command's config has only some of them) and raises one `ConfigError` that
names every wrong key and what it must be, e.g. `trainer.max_epochs='abc': expected an integer` or
`model.lora.r=-3: must be >= 1`. A `*` in a key stands for every entry of a mapping (`data.sources.*.weight`: each
source of a mixture). Keys not in the table are checked where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from embedexp.core.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What one key's value must be: an `int` or a `float` (an int is a float too) within [low, high], a `bool`, or
    a `str` that is one of `words`."""

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False  # the value must be > low (not >=)
    open_high: bool = False  # the value must be < high (not <=)
    nullable: bool = False  # null is allowed
    words: tuple[str, ...] = ()  # strings allowed besides numbers (e.g. `auto`)

    def problem(self, value: object) -> str | None:
        """Why `value` breaks the rule (None: it does not)."""
        if value is None:
            return None if self.nullable else f"expected {self.expected()}, not null"
        if isinstance(value, str) and value in self.words:
            return None
        if self.kind in (bool, str):
            return None if self.kind is bool and isinstance(value, bool) else f"expected {self.expected()}"
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return f"expected {self.expected()}"
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"must be {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return f"must be {'<' if self.open_high else '<='} {self.high:g}"
        return None

    def expected(self) -> str:
        """`an integer`, `a number`, plus the allowed words and null."""
        kinds = {int: ["an integer"], float: ["a number"], bool: ["true or false"], str: []}
        names = [*kinds[self.kind], *(repr(w) for w in self.words)]
        return " or ".join(names + (["null"] if self.nullable else []))


COUNT, SIZE = Rule(int, 0), Rule(int, 1)
RULES: dict[str, Rule] = {
    "seed": Rule(int),
    "data_seed": Rule(int),
    "num_threads": Rule(int, 1, words=("auto",)),
    "warmup_ratio": Rule(float, 0, 1),
    "optimizer.lr": Rule(float, 0, open_low=True),
    "optimizer.weight_decay": Rule(float, 0),
    "grad_cache.chunk_size": Rule(int, 1, nullable=True),
    "eval.batch_size": SIZE,
    "batch_size": SIZE,
    "trainer.max_epochs": Rule(int, -1, nullable=True),
    "trainer.min_epochs": Rule(int, 0, nullable=True),
    "trainer.max_steps": Rule(int, -1),
    "trainer.accumulate_grad_batches": SIZE,
    "trainer.log_every_n_steps": SIZE,
    "trainer.gradient_clip_val": Rule(float, 0, nullable=True),
    "trainer.num_sanity_val_steps": Rule(int, -1),
    "model.max_length": SIZE,
    "model.lora.r": SIZE,
    "model.lora.alpha": Rule(float, 0, open_low=True),
    "model.lora.dropout": Rule(float, 0, 1, open_high=True),
    "model.lora.last_n_layers": Rule(int, 1, nullable=True),
    "model.attention_groups": Rule(str, words=("length", "single")),
    "model.compile_guards": Rule(str, words=("all", "skip_after_warmup")),
    "optimizer.fused": Rule(bool, nullable=True),
    "data.batch_size": SIZE,
    "data.val_pairs": COUNT,
    "data.num_workers": COUNT,
    "data.source.max_pairs": Rule(int, 1, nullable=True),
    "data.source.max_per_category": Rule(int, 1, nullable=True),
    "data.source.min_families": SIZE,
    "data.total_pairs": SIZE,
    "data.sources.*.weight": Rule(float, 0),
    "data.sources.*.pairs": Rule(int, 0, nullable=True),
    "data.sources.*.max_pairs": Rule(int, 1, nullable=True),
    "data.sources.*.max_per_category": Rule(int, 1, nullable=True),
    "data.sources.*.min_families": SIZE,
    "loss.temperature": Rule(float, 0, open_low=True),
    "loss.margin": Rule(float),
    "pooling.layer": Rule(int),
    "prefix_store.max_gb": Rule(float, 0, open_low=True),
    "callbacks.clustering_eval.every_n_epochs": SIZE,
    "callbacks.step_checkpoint.every_n_train_steps": SIZE,
    "confidence": Rule(float, 0, 1, open_low=True, open_high=True),
}


def _value(cfg: DictConfig, key: str) -> tuple[bool, object]:
    """(present, value) of a dotted key; a value whose interpolation cannot resolve here counts as absent."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent or OmegaConf.is_missing(parent, leaf):
        return False, None
    try:
        return True, OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception:  # a resolver that needs a Hydra run or the environment: checked where it is used
        return False, None


def expand(cfg: DictConfig, key: str) -> list[str]:
    """The keys of the config that a rule's key names: itself, or one per entry where it has a `*`."""
    head, star, tail = key.partition(".*")
    if not star:
        return [key]
    node = OmegaConf.select(cfg, head, default=None)
    if not isinstance(node, DictConfig):
        return []
    return [k for name in node for k in expand(cfg, f"{head}.{name}{tail}")]


def config_problems(cfg: DictConfig, rules: dict[str, Rule] = RULES) -> list[str]:
    """`key=value: what it must be`, for every key of `rules` the config has with a wrong value."""
    problems = []
    for key, rule in ((k, rule) for pattern, rule in rules.items() for k in expand(cfg, pattern)):
        present, value = _value(cfg, key)
        problem = rule.problem(value) if present else None
        if problem:
            shown = repr(value) if isinstance(value, str) else value if value is not None else "null"
            problems.append(f"{key}={shown}: {problem}")
    return problems


def check_config(cfg: DictConfig) -> None:
    """Raise one `ConfigError` naming every key of `RULES` whose value has the wrong type or range."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
