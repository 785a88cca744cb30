"""`python -m embedexp contamination <run folder> <file>...`: a run's training data against any labelled files.

The run's training pairs are rebuilt from its saved config (`<run>/.hydra/config.yaml`, with this machine's `paths`);
each file (any format of `embedexp.data.reader`: .txt, .csv, .tsv, .jsonl, .json, .parquet, .gz) is indexed and
every text of every pair is looked up: exact repeats (normalised) and near duplicates (MinHash LSH, char 5-gram
Jaccard >= --threshold). Prints the counts per file and source with a few examples, and writes them as JSON
(`--out`, default `<run>/contamination_files.json`) with the provenance of the check.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from embedexp.cli.runner import plain_command
from embedexp.core.atomic import atomic_write_text
from embedexp.core.config import CONFIG_DIR
from embedexp.core.errors import ConfigError, DataError
from embedexp.core.provenance import provenance
from embedexp.data.contamination import EvaluationTexts
from embedexp.data.contamination_check import datamodule_pairs
from embedexp.data.reader import column_texts, read_table

RUN_CONFIG = Path(".hydra") / "config.yaml"
TEXT_COLUMNS = ("text", "sentences")  # tried in this order when --column is not given
RESULT_FILE = "contamination_files.json"


def run_config(run_dir: Path) -> DictConfig:
    """The run's saved config with this machine's `paths` (its output folder: the run folder)."""
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {RUN_CONFIG} (is it a training run folder?)")
    cfg = OmegaConf.load(path)
    with open_dict(cfg):
        cfg.paths = OmegaConf.load(CONFIG_DIR / "paths" / "default.yaml")
        cfg.paths.output_dir = str(run_dir)
    return cfg


def training_pairs(run_dir: Path) -> tuple[list, list[str]]:
    """The run's training and validation pairs, rebuilt from its config, with the source key of each."""
    cfg = run_config(run_dir)
    if not cfg.get("data"):
        raise ConfigError(f"{run_dir / RUN_CONFIG}: no `data` config")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule_pairs(datamodule)


def file_column(path: str, column: str | None) -> str:
    """`column`, or the first of `text` / `sentences` the file has (a .txt file: its lines)."""
    if column:
        return column
    frame = read_table(path, "file")
    found = next((c for c in TEXT_COLUMNS if c in frame.columns), None)
    if found is None:
        raise DataError(f"{path}: no column {' or '.join(TEXT_COLUMNS)}; columns are {list(frame.columns)} (--column)")
    return found


def check_files(run_dir: Path, files: list[str], column: str | None, threshold: float, examples: int) -> dict:
    """Overlap counts and examples of the run's pairs against each file."""
    pairs, origins = training_pairs(run_dir)
    cache = str(run_config(run_dir).paths.cache_dir)
    result = {"run": str(run_dir), "pairs": len(pairs), "sources": {o: origins.count(o) for o in set(origins)}}
    result["files"] = {}
    for path in files:
        name = file_column(path, column)
        column_texts(read_table(path, "file", txt_column=name), name, path, "--column")  # clear errors first
        texts = EvaluationTexts(
            {"file": {"task": Path(path).name, "path": path, "column": name}}, None, threshold, cache_dir=cache
        )
        summary = texts.describe(texts.find(pairs, origins), examples)
        result["files"][path] = {
            k: summary[k] for k in ("evaluation_texts", "contaminated_texts", "counts", "examples", "seconds")
        } | {"column": name}
    return result


def print_result(result: dict) -> None:
    """Counts per file and source, then the examples."""
    print(f"{result['run']}: {result['pairs']} training pairs ({result['sources']})")
    for path, found in result["files"].items():
        print(
            f"\n{path} (column {found['column']}, {found['evaluation_texts']} distinct texts): "
            f"{found['contaminated_texts']} training texts repeat one"
        )
        for origin, by_task in sorted(found["counts"].items()):
            for kinds in by_task.values():
                print(f"  {origin}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
        for key, shown in found["examples"].items():
            for example in shown:
                print(
                    f"    {key.split(' ~ ')[0]} [{example['kind']} {example['similarity']:.2f}] "
                    f"{example['training_text'][:100]!r} ~ {example['evaluation_text'][:100]!r}"
                )


def check(args: argparse.Namespace) -> None:
    """Check the files, print the counts and write the JSON result (with its provenance)."""
    run_dir = Path(args.run_dir)
    result = check_files(run_dir, args.files, args.column, args.threshold, args.examples)
    print_result(result)
    out = Path(args.out) if args.out else run_dir / RESULT_FILE
    result["provenance"] = provenance(None)
    atomic_write_text(out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten to {out}")


PARSER = argparse.ArgumentParser(prog="embedexp contamination", description=__doc__.split("\n", 1)[0])
PARSER.add_argument("run_dir", help="a training run folder (holds .hydra/config.yaml)")
PARSER.add_argument("files", nargs="+", help="labelled files to check the run's training texts against")
PARSER.add_argument("--column", help="the text column of the files (default: text, else sentences)")
PARSER.add_argument("--threshold", type=float, default=0.8, help="near-duplicate char 5-gram Jaccard (0.8)")
PARSER.add_argument("--examples", type=int, default=3, help="examples shown per file and source (3)")
PARSER.add_argument("--out", help=f"JSON result (default: <run>/{RESULT_FILE})")
# command line: `<run folder> <file>... [--column C] [--threshold T] [--examples N] [--out F]`
main = plain_command(PARSER, check)


if __name__ == "__main__":
    main()
