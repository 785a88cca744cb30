"""The pair-synthesis stage: `python -m embedexp synth [generator=noise] [overrides]` (Hydra, `conf/synth.yaml`).

Source texts -> text filters (length, language, contamination, duplicates) -> generator, one shard of
`shard_texts` texts at a time -> pair filters -> Parquet shard -> manifest. Rerunning with the same
`hydra.run.dir` continues after the last complete shard.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from embedexp.core.errors import ConfigError
from embedexp.core.hardware import configure_threads
from embedexp.core.progress import Progress
from embedexp.data.overlap import OverlapIndex
from embedexp.synthesis.filters import Filters, TextStage, task_texts
from embedexp.synthesis.generators.base import Generator
from embedexp.synthesis.manifest import build_manifest, fingerprint, stats_delta, summed
from embedexp.synthesis.writer import (
    ShardInfo,
    clear_output,
    list_shards,
    read_pairs,
    remove_staging,
    shard_name,
    write_csv,
    write_manifest,
    write_shard,
)

log = logging.getLogger("embedexp.synthesis")


@dataclass
class Run:
    """The state of one synthesis run: its parts, the filtered source texts, and what the shards hold so far."""

    key: str
    source: object
    generator: Generator
    filters: Filters
    task_names: list[str]
    n_source: int
    texts: TextStage
    infos: list[ShardInfo] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    n_pairs: int = 0
    start: int = 0
    positives: OverlapIndex | None = None
    anchors: OverlapIndex | None = None
    started: float = field(default_factory=time.perf_counter)


class ShardProgress:
    """The progress callback generators report to: texts done in the current shard, shown beside the pair bar."""

    def __init__(self, bar: Progress) -> None:
        """Wrap the pair progress (a bar on a terminal, log lines elsewhere)."""
        self.bar, self.shard, self.done, self.total = bar, 0, 0, 0

    def start(self, shard: int, total: int) -> ShardProgress:
        """Begin a shard of `total` texts."""
        self.shard, self.done, self.total = shard, 0, total
        return self

    def __call__(self, n: int) -> None:
        """`n` more texts of this shard were tried."""
        self.done += n
        self.bar.describe(f"shard {self.shard}: {self.done}/{self.total} texts")


def build_parts(cfg: DictConfig) -> tuple[object, Generator, Filters, list[str]]:
    """The source, the generator and the filters (with the evaluation tasks' texts for the contamination check)."""
    if not isinstance(cfg.get("generator"), DictConfig) or not isinstance(cfg.get("source"), DictConfig):
        raise ConfigError("choose the config groups as synth/generator=<name> and synth/source=<name>")
    source, generator = instantiate(cfg.source), instantiate(cfg.generator, _convert_="all")
    if not isinstance(generator, Generator):
        name = type(generator).__name__
        raise ConfigError(f"generator._target_ must build an embedexp.synthesis Generator, got {name}")
    filters_cfg = OmegaConf.to_container(cfg.filters, resolve=True)
    eval_texts, task_names = [], []
    if (filters_cfg.get("contamination") or {}).get("enabled", True) and cfg.get("tasks"):
        from embedexp.evaluation.tasks import build_tasks

        tasks = build_tasks(cfg.tasks)
        eval_texts, task_names = task_texts(tasks), [t.metadata.name for t in tasks]
    return source, generator, Filters.from_config(filters_cfg, eval_texts), task_names


def prepare(cfg: DictConfig, out: Path) -> Run:
    """Check the folder, build the parts, filter the source texts, and restore the state of complete shards."""
    remove_staging(out)
    key = fingerprint(cfg)
    if cfg.get("overwrite"):
        clear_output(out)
    foreign = sorted({info.fingerprint for info in list_shards(out)} - {key})
    if foreign:
        raise ConfigError(
            f"{out} holds shards of a different synthesis config (fingerprint {foreign[0]} != {key}); "
            "use another hydra.run.dir, or overwrite=true"
        )
    source, generator, filters, task_names = build_parts(cfg)
    all_texts = source.load()
    log.info("%s: %d texts", source.name, len(all_texts))
    run = Run(key, source, generator, filters, task_names, len(all_texts), TextStage(filters, all_texts))
    run.infos = list_shards(out)
    if run.infos:
        run.texts.ensure(run.infos[-1].end)  # the text filters are deterministic: the same texts pass again
    rows = read_pairs(out, run.infos)
    fn = filters.false_negatives
    run.positives, run.anchors = filters.dedup.index(), OverlapIndex(fn.threshold, shingle=fn.n, kind=fn.shingle)
    for anchor, positive in zip(rows["text"], rows["text_pos"]):
        run.positives.add(positive)
        run.anchors.add(anchor)
    run.counts, saved_stats = summed(run.infos)
    generator.merge_stats(saved_stats)
    run.n_pairs, run.start = len(rows), run.infos[-1].end if run.infos else 0
    if run.infos:
        log.info("resuming after %d complete shard(s): %d pairs, %d texts used", len(run.infos), len(rows), run.start)
    return run


def filter_shard(run: Run, chunk: list[str], outputs: list[str | None], need: int) -> tuple[list, Counter, int]:
    """Kept (anchor, positive) pairs of one shard (at most `need`), drop counts, and the end of the texts used."""
    kept, counts = [], Counter()
    for offset, (anchor, positive) in enumerate(zip(chunk, outputs)):
        reason = "generator_failed" if positive is None else None
        reason = reason or run.filters.pair_reason(anchor, positive, run.generator.allows_copy, run.positives)
        if reason:
            counts[reason] += 1
        else:
            kept.append((anchor, positive))
            if len(kept) == need:
                return kept, counts, run.start + offset + 1
    return kept, counts, run.start + len(chunk)


def flag_false_negatives(run: Run, frame: pd.DataFrame, counts: Counter) -> pd.DataFrame:
    """Add `fn_flag`: the anchor near-duplicates an earlier anchor of its batch (of the whole output when batch_size
    is null); with action=drop the flagged pairs are removed. Both are counted."""
    cfg = run.filters.false_negatives
    if cfg.batch_size:
        flags = run.filters.flag_false_negatives(frame["text"].tolist())
    else:
        flags = [run.anchors.add_if_new(a) is not None for a in frame["text"]]
    frame = frame.assign(fn_flag=flags)
    counts["false_negative_flagged"] += int(sum(flags))
    if cfg.action == "drop":
        counts["false_negative"] += int(sum(flags))
        frame = frame[~frame["fn_flag"]].reset_index(drop=True)
    return frame


def write_next_shard(cfg: DictConfig, run: Run, out: Path, progress: ShardProgress) -> int:
    """Generate, filter and write the next shard; returns the number of pairs it holds (-1: no texts left)."""
    index, seed = len(run.infos), int(cfg.seed) + len(run.infos)
    chunk = run.texts.ensure(run.start + int(cfg.shard_texts))[run.start : run.start + int(cfg.shard_texts)]
    if not chunk:
        return -1
    tick, before = time.perf_counter(), run.generator.stats_dict()
    outputs = run.generator.generate(chunk, seed, progress.start(index, len(chunk)))
    kept, counts, end = filter_shard(run, chunk, outputs, int(cfg.num_pairs) - run.n_pairs)
    frame = pd.DataFrame(kept, columns=["text", "text_pos"])
    frame["generator"], frame["source"], frame["seed"] = run.generator.name, run.source.name, seed
    if run.filters.false_negatives.enabled:
        frame = flag_false_negatives(run, frame, counts)
    seconds, stats = time.perf_counter() - tick, stats_delta(before, run.generator.stats_dict())
    info = ShardInfo(index, shard_name(index), len(frame), run.start, end, seed, seconds, dict(counts), stats, run.key)
    write_shard(out, frame, info)
    run.infos.append(info)
    run.counts.update(counts)
    run.n_pairs, run.start = run.n_pairs + len(frame), end
    write_manifest(out, build_manifest(cfg, run, "running"))
    return len(frame)


def synthesize(cfg: DictConfig) -> dict:
    """Run (or resume) the synthesis into `paths.output_dir`; returns the manifest."""
    configure_threads(cfg.get("num_threads", "auto"))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = prepare(cfg, out)
    target = int(cfg.num_pairs)
    mode = None if cfg.get("progress", True) else "off"
    bar = Progress(target, f"synth {run.generator.name}", "pairs", initial=min(run.n_pairs, target), mode=mode)
    progress = ShardProgress(bar)
    while run.n_pairs < target and (written := write_next_shard(cfg, run, out, progress)) >= 0:
        bar.update(written)
    bar.close()
    status = "complete" if run.n_pairs >= target else "source_exhausted"
    if status == "source_exhausted":
        log.warning("the source ran out of texts: %d of %d pairs", run.n_pairs, target)
    manifest = build_manifest(cfg, run, status)
    write_manifest(out, manifest)
    if cfg.get("csv"):
        write_csv(out, read_pairs(out))
    return manifest


SHORTHANDS = {"generator=": "synth/generator=", "source=": "synth/source="}


def expand_shorthands(argv: list[str]) -> list[str]:
    """`generator=noise` / `source=file` select the config groups synth/generator and synth/source."""
    return [next((SHORTHANDS[p] + a[len(p) :] for p in SHORTHANDS if a.startswith(p)), a) for a in argv]
