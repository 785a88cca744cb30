"""The pair sources of `data=mixture` on this machine, and the contamination check's cost.

python benchmarks/bench_data.py [--out benchmarks/results] [--sizes 3000 20000 60000]

In a fresh cache folder: the evaluation-text index (first build, load from cache); per source the first build, the
load from its cache, the candidate pairs (deduplicated, family-capped), how many repeat evaluation texts (by task,
with examples) and the usable rest; then the check of 3,000 / 20,000 / 60,000 mixture pairs. Writes result files
(`embedexp.core.results`): data_sources.json, data_contamination.json, data_check_time.json, and the examples as
data_contamination_examples.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from embedexp.core.config import CONFIG_DIR
from embedexp.core.results import write_result_table
from embedexp.data import contamination
from embedexp.data.mixture import MIXTURE_KEYS, MixtureDataModule

COMMAND = "python benchmarks/bench_data.py"


def timed(fn):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    """Measure and write the three result files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 20000, 60000])
    args = parser.parse_args()
    out, cache = Path(args.out), tempfile.mkdtemp(prefix="embedexp-bench-data-")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["data=mixture", f"paths.cache_dir={cache}", "paths.output_dir=unused"])
    texts = instantiate(cfg.contamination.texts)
    index, first_index = timed(texts.index)
    contamination._LOADED.clear()
    _, cached_index = timed(instantiate(cfg.contamination.texts).index)
    print(f"evaluation texts: {len(index)} indexed in {first_index:.1f} s, loaded from cache in {cached_index:.1f} s")

    sources = OmegaConf.to_container(cfg.data.sources, resolve=True)
    source_rows, task_rows, examples = [], [], {}
    for name, node in sources.items():
        source = instantiate({k: v for k, v in node.items() if k not in MIXTURE_KEYS})
        source.origin, source.exclude, source.max_pairs = f"data.sources.{name}", None, None
        _, first = timed(source.records) if hasattr(source, "records") else timed(source.load)
        candidates, cached = timed(source.load)
        found = texts.find(candidates, name)
        summary = texts.describe(found, examples=3)
        hit_texts = {hit.text for hit in found.hits}
        bad_pairs = sum(any(t in hit_texts for t in contamination.pair_texts(p)) for p in candidates)
        kinds = {"exact": 0, "near": 0}
        for by_kind in summary["counts"].get(name, {}).values():
            for kind, n in by_kind.items():
                kinds[kind] += n
        source_rows.append(
            [
                name,
                len(candidates),
                kinds["exact"],
                kinds["near"],
                len(candidates) - bad_pairs,
                round(first, 1),
                round(cached, 2),
            ]
        )
        for task, by_kind in sorted(summary["counts"].get(name, {}).items()):
            task_rows.append([name, task, by_kind.get("exact", 0), by_kind.get("near", 0)])
        examples[name] = summary["examples"]
        print(source_rows[-1], flush=True)

    write_result_table(
        out / "data_sources.json",
        "Pair sources of data=mixture on this machine",
        [
            "source",
            "candidate pairs",
            "texts repeating evaluation texts (exact)",
            "(near)",
            "usable pairs",
            "first build (s)",
            "cached load + sample (s)",
        ],
        source_rows,
        COMMAND,
        notes="candidate pairs: after deduplication and the per-family cap; usable: candidates with no text repeating "
        f"an evaluation text. Evaluation index: {len(index)} texts, first build {first_index:.1f} s, "
        f"cached load {cached_index:.1f} s.",
    )
    write_result_table(
        out / "data_contamination.json",
        "Training texts repeating evaluation texts, by source and task",
        ["source", "task", "exact", "near"],
        task_rows,
        COMMAND,
    )
    (out / "data_contamination_examples.json").write_text(json.dumps(examples, indent=2, ensure_ascii=False) + "\n")

    largest = max(args.sizes)
    datamodule = MixtureDataModule(cfg.data.sources, total_pairs=largest, seed=0)
    pairs, origins = datamodule.load_pairs()
    time_rows = []
    for size in args.sizes:
        findings = texts.find(pairs[:size], origins[:size])
        time_rows.append([min(size, len(pairs)), findings.texts, round(findings.seconds, 2), len(findings.hits)])
        print(time_rows[-1], flush=True)
    write_result_table(
        out / "data_check_time.json",
        "Contamination check time (pairs of data=mixture, every text of each pair)",
        ["pairs", "texts", "check (s)", "texts repeating evaluation texts"],
        time_rows,
        COMMAND,
        notes=f"against {len(index)} evaluation texts, index loaded from cache in {cached_index:.1f} s "
        f"(first build {first_index:.1f} s)",
    )


if __name__ == "__main__":
    main()
