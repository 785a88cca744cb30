"""`data=mixture`: pairs from several sources, `total_pairs` shared out by weight, served per source or mixed.

Each entry of `sources` is a pair source config (`_target_`, conf/data/source/) plus the mixture's own keys:
`weight` (share of `total_pairs`), `pairs` (an exact count instead of a weight), `optional` (a source this machine
cannot build is left out with a warning instead of stopping the run) and `drop_contaminated` (evaluation texts,
`${contamination.texts}`: the mixture drops the source's pairs that repeat one, for sources that cannot themselves).
A source that has fewer pairs than its share gives what it has and the rest goes to the others by weight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from embedexp.core.errors import ConfigError, DataError, EmbedexpError
from embedexp.core.instantiate import instantiate_node
from embedexp.data.datamodule import PairDataModule
from embedexp.data.pairs import Pair

log = logging.getLogger(__name__)
MIXTURE_KEYS = ("weight", "pairs", "optional", "drop_contaminated")
BATCHING = ("per_source", "mixed")


def allocate(weights: Mapping[str, float], total: int, available: Mapping[str, int]) -> dict[str, int]:
    """Pair counts per source: `total` shared by weight (largest remainders), capped by what a source has
    (`available`; absent: no cap), the shortfall of capped sources shared out again among the others."""
    counts = dict.fromkeys(weights, 0)
    open_ = {k for k, w in weights.items() if w > 0}
    remaining = total
    while remaining > 0 and open_:
        weight_sum = sum(weights[k] for k in open_)
        shares = {k: remaining * weights[k] / weight_sum for k in open_}
        floors = {k: int(v) for k, v in shares.items()}
        extra = remaining - sum(floors.values())
        for k in sorted(open_, key=lambda k: (floors[k] - shares[k], k))[:extra]:
            floors[k] += 1
        remaining = 0
        for k in sorted(open_):
            cap = available.get(k)
            take = floors[k] if cap is None else min(floors[k], cap - counts[k])
            counts[k] += take
            remaining += floors[k] - take
        open_ = {k for k in open_ if available.get(k) is None or counts[k] < available[k]}
    return counts


class MixtureDataModule(PairDataModule):
    """A PairDataModule over several pair sources; `batching=per_source` draws every batch from one source."""

    ENTRY_KEYS = MIXTURE_KEYS  # keys of each `sources.<name>` entry the mixture reads itself (not the source)

    def __init__(
        self,
        sources: DictConfig | Mapping,
        total_pairs: int = 3000,
        batching: str = "per_source",
        **datamodule_kwargs,
    ) -> None:
        """`sources`: {name: source config with `weight` / `pairs` / `optional`} (instantiated in `setup`); the other
        keyword arguments are PairDataModule's (batch_size, val_pairs, length_grouped, num_workers, seed)."""
        super().__init__(None, **datamodule_kwargs)
        if batching not in BATCHING:
            raise ConfigError(f"data.batching must be one of {BATCHING}, got {batching!r}")
        if not sources:
            raise ConfigError("data.sources: a mixture needs at least one source (data/source@data.sources.<name>)")
        # resolved here, inside the run's config (interpolations such as ${seed} need it), then plain dicts
        plain = OmegaConf.to_container(sources, resolve=True) if isinstance(sources, DictConfig) else dict(sources)
        self.sources = {k: v for k, v in plain.items() if v}
        self.total_pairs, self.batching = total_pairs, batching
        self.counts: dict[str, int] = {}

    def _source(self, name: str, node, limit: int | None):
        """Instantiate one source (without the mixture's keys) asking for at most `limit` pairs."""
        source = instantiate_node({k: v for k, v in node.items() if k not in MIXTURE_KEYS})
        if hasattr(source, "origin"):
            source.origin = f"data.sources.{name}"
        own = getattr(source, "max_pairs", None)  # a source's own max_pairs caps its share
        source.max_pairs = own if limit is None else limit if own is None else min(limit, own)
        return source

    def load_pairs(self) -> tuple[list[Pair], list[str]]:
        """Every source's share (its `pairs`, or `total_pairs` by weight), each pair labelled `data.sources.<name>`."""
        fixed = {k: int(v["pairs"]) for k, v in self.sources.items() if v.get("pairs") is not None}
        weights = {k: float(v.get("weight", 1.0)) for k, v in self.sources.items() if k not in fixed}
        if any(w < 0 for w in weights.values()) or (weights and not sum(weights.values()) and not fixed):
            raise ConfigError(f"data.sources.<name>.weight must be >= 0 with a positive sum, got {weights}")
        rest = max(0, self.total_pairs - sum(fixed.values()))
        loaded: dict[str, list[Pair]] = {}
        exhausted: dict[str, int] = {}  # sources that gave fewer pairs than asked: all they have
        wanted = {**fixed, **allocate(weights, rest, exhausted)}
        while True:  # each round either ends or finds one more exhausted source
            short = False
            for name, count in wanted.items():
                if count > len(loaded.get(name, ())) and name not in exhausted:
                    loaded[name] = self._load(name, count)
                    if len(loaded[name]) < count:
                        exhausted[name], short = len(loaded[name]), True
                        log.warning(
                            "data.sources.%s: %d pairs available, fewer than its share %d",
                            name,
                            len(loaded[name]),
                            count,
                        )
            if not short:
                break
            wanted = {**fixed, **allocate(weights, rest, exhausted)}
        self.counts = {name: min(len(loaded.get(name, ())), wanted[name]) for name in wanted}
        pairs, origins = [], []
        for name, count in self.counts.items():
            pairs += loaded.get(name, [])[:count]
            origins += [f"data.sources.{name}"] * count
        if not pairs:
            raise DataError("data.sources: no source gave any pairs")
        log.info("mixture: %s", ", ".join(f"{name} {count}" for name, count in self.counts.items()))
        return pairs, origins

    def _load(self, name: str, count: int) -> list[Pair]:
        """One source's first `count` pairs; an optional source that cannot be built here gives none (warned)."""
        node = self.sources[name]
        try:
            if not node.get("drop_contaminated"):
                source = self._source(name, node, count)
                pairs = source.load()
                self.record_drops(getattr(source, "exclude", None))
                return pairs
            texts = instantiate_node(node["drop_contaminated"])
            pairs = texts.drop(self._source(name, node, None).load(), f"data.sources.{name}", limit=count)
            self.record_drops(texts)
            return pairs
        except EmbedexpError as err:
            message = str(err) if str(err).startswith(f"data.sources.{name}") else f"data.sources.{name}: {err}"
            if node.get("optional"):
                log.warning("%s; left out (optional)", message)
                return []
            raise DataError(
                f"{message} (or leave it out: ~data/source@data.sources.{name}, or mark it "
                f"data.sources.{name}.optional=true)"
            ) from err

    def batch_groups(self) -> list[int] | None:
        """With `batching=per_source`: the source of each training pair (every batch from one source)."""
        if self.batching != "per_source":
            return None
        ids = {name: i for i, name in enumerate(sorted(set(self.train_origins)))}
        return [ids[origin] for origin in self.train_origins]
