"""The run record (manifest.json): config fingerprint for resuming, counts per filter, generator counters, timing."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from datetime import datetime, timezone

from omegaconf import DictConfig, OmegaConf

from embedexp.core.provenance import provenance
from embedexp.synthesis.writer import COLUMNS, ShardInfo

VOLATILE_KEYS = {"cache_dir", "device", "batch_size"}  # they do not change what a shard contains
COUNTERS = ("texts", "accepted", "attempts", "failed")


def _strip(node):
    """A config container without keys that may change between a run and its resume."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in VOLATILE_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def fingerprint(cfg: DictConfig) -> str:
    """Hash of everything that decides the shards' content; a resume must match it."""
    keys = ("source", "generator", "filters", "tasks", "seed", "shard_texts")
    node = OmegaConf.to_container(cfg, resolve=True)
    content = {k: _strip(node.get(k)) for k in keys}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def summed(infos: list[ShardInfo]) -> tuple[Counter, dict]:
    """Drop counts and generator counters over the given shards."""
    counts, stats = Counter(), {}
    for info in infos:
        counts.update(info.counts)
        for name, values in info.generator.items():
            total = stats.setdefault(name, {**dict.fromkeys(COUNTERS, 0), "rejected": {}})
            for key in COUNTERS:
                total[key] += values.get(key, 0)
            total["rejected"] = dict(Counter(total["rejected"]) + Counter(values.get("rejected", {})))
    return counts, stats


def stats_delta(before: dict, after: dict) -> dict:
    """Generator counters accumulated between two `stats_dict()` snapshots."""
    delta = {}
    for name, values in after.items():
        old = before.get(name, {})
        delta[name] = {k: values[k] - old.get(k, 0) for k in COUNTERS}
        delta[name]["rejected"] = dict(Counter(values["rejected"]) - Counter(old.get("rejected", {})))
    return delta


def build_manifest(cfg: DictConfig, run, status: str) -> dict:
    """The run's record: config, counts per filter, generator counters, model id, throughput, shards."""
    infos, filters, contamination_index = run.infos, run.filters, run.filters.contamination
    generation_s = sum(i.seconds for i in infos)
    text_counts = run.texts.counts
    contamination = {k: v for k, v in {**text_counts, **run.counts}.items() if "contamination" in k}
    return {
        "status": status,
        "fingerprint": run.key,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": run.generator.name,
        "model_id": run.generator.model_id,
        "source": run.source.name,
        "columns": COLUMNS + (["fn_flag"] if filters.false_negatives.enabled else []),
        "pairs": run.n_pairs,
        "num_pairs_target": int(cfg.num_pairs),
        "counts": {
            "source_texts": run.n_source,
            "texts_examined": run.texts.position,
            "text_filters": dict(sorted(text_counts.items())),
            "texts_passed": len(run.texts.kept),
            "texts_used": run.start,
            "pair_filters": dict(sorted(run.counts.items())),
            "pairs": run.n_pairs,
        },
        "contamination": {
            "tasks": run.task_names,
            "eval_texts": contamination_index.size if contamination_index else 0,
            "ngram": contamination_index.ngram if contamination_index else None,
            "threshold": contamination_index.threshold if contamination_index else None,
            "dropped": dict(sorted(contamination.items())),
        },
        "generator_stats": run.generator.stats_dict(),
        "time": {
            "generation_s": round(generation_s, 1),
            "pairs_per_s": round(run.n_pairs / generation_s, 4) if generation_s else None,
            "this_run_s": round(time.perf_counter() - run.started, 1),
        },
        "shards": [{k: v for k, v in vars(i).items() if k not in ("generator", "fingerprint")} for i in infos],
        "config": OmegaConf.to_container(cfg, resolve=True),
        "provenance": provenance(cfg.seed),
    }


def summary(manifest: dict, folder: str) -> str:
    """A short human-readable report of a run."""
    counts, timing = manifest["counts"], manifest["time"]
    return "\n".join(
        [
            f"synthesis {manifest['status']}: {manifest['pairs']} pairs ({manifest['generator']}, "
            f"model {manifest['model_id']}) in {folder}",
            f"  source {manifest['source']}: {counts['source_texts']} texts, {counts['texts_examined']} examined; "
            f"text filters dropped {counts['text_filters']}; {counts['texts_used']} texts used",
            f"  pair filters dropped {counts['pair_filters']}",
            f"  contamination: {manifest['contamination']['eval_texts']} evaluation texts, dropped "
            f"{manifest['contamination']['dropped']}",
            f"  generation {timing['generation_s']} s, {timing['pairs_per_s']} pairs/s",
        ]
    )
