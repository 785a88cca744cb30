"""Contamination checks: the overlap index, the cached evaluation texts, sources dropping repeats, the check at the
start of training refusing a contaminated pairs file, and the `contamination` command."""

from __future__ import annotations

import gzip
import json
import pickle

import pandas as pd
import pytest

from embedexp.core.errors import DataError
from embedexp.data import contamination
from embedexp.data.contamination import EvaluationTexts, task_references
from embedexp.data.overlap import OverlapIndex

from .conftest import TINY_OVERRIDES, compose_config

TITLES = [
    "How to convert a string to an integer in Java",
    "Best way to parse command line arguments in Python",
    "Why does my SQL join return duplicate rows",
    "Centering a div horizontally and vertically with CSS",
]
CLEAN = [
    ("a tool to list directory contents", "ls lists information about files in the current directory"),
    ("compress files with the gzip algorithm", "gzip reduces the size of the named files using Lempel-Ziv"),
]


def write_jsonl_gz(path, texts, field="sentences"):
    """A gzipped JSON Lines file like the shared clustering data."""
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for number, text in enumerate(texts):
            handle.write(json.dumps({field: text, "labels": str(number % 2)}) + "\n")
    return path


@pytest.fixture
def titles_file(tmp_path):
    return write_jsonl_gz(tmp_path / "titles.jsonl.gz", TITLES)


def evaluation_texts(titles_file, tmp_path, **kwargs) -> EvaluationTexts:
    references = {"stackoverflow": {"task": "StackOverflowTitlesClustering", "path": str(titles_file)}}
    return EvaluationTexts(references, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_overlap_index_finds_exact_and_near_repeats_and_survives_pickling():
    index = OverlapIndex(threshold=0.8)
    for text in TITLES:
        index.add(text, "so")
    assert index.find("how to CONVERT a string to an integer in java?").kind == "exact"
    near = index.find("Best way to parse command line arguments in Python 3")
    assert near.kind == "near" and near.similarity >= 0.8 and index.texts[near.entry] == TITLES[1]
    assert index.find("A recipe for lemon cake with poppy seeds") is None
    restored = pickle.loads(pickle.dumps(index))
    assert restored.find("Best way to parse command line arguments in Python 3").entry == near.entry
    assert len(restored) == len(TITLES)


def test_evaluation_texts_are_indexed_once_and_cached(titles_file, tmp_path):
    texts = evaluation_texts(titles_file, tmp_path)
    assert len(texts.index()) == len(TITLES)
    cached = list((tmp_path / "cache" / "contamination").glob("index-*.pkl"))
    assert len(cached) == 1
    contamination._LOADED.clear()
    titles_file.unlink()
    write_jsonl_gz(titles_file, TITLES[:2])  # a changed file is indexed again
    assert len(evaluation_texts(titles_file, tmp_path).index()) == 2
    assert len(list((tmp_path / "cache" / "contamination").glob("index-*.pkl"))) == 2


def test_find_counts_every_text_of_every_pair_by_source_and_task(titles_file, tmp_path):
    texts = evaluation_texts(titles_file, tmp_path)
    pairs = [*CLEAN, (TITLES[0], "convert strings to ints"), ("x y z w", "why does my SQL join return duplicate rows!")]
    summary = texts.describe(texts.find(pairs, ["a", "a", "b", "c"]))
    assert summary["contaminated_texts"] == 2
    assert summary["counts"] == {
        "b": {"StackOverflowTitlesClustering": {"exact": 1}},
        "c": {"StackOverflowTitlesClustering": {"exact": 1}},
    }
    assert summary["examples"]["b ~ StackOverflowTitlesClustering"][0]["evaluation_text"] == TITLES[0]


def test_drop_keeps_clean_pairs_up_to_the_limit(titles_file, tmp_path):
    texts = evaluation_texts(titles_file, tmp_path)
    pairs = [(TITLES[2], "joins"), CLEAN[0], ("sorting", TITLES[3].upper()), CLEAN[1]]
    assert texts.drop(iter(pairs), "data.sources.x") == CLEAN
    assert sum(texts.dropped["data.sources.x"].values()) == 2
    assert texts.drop(iter(pairs), "data.sources.x", limit=1) == CLEAN[:1]


def test_missing_reference_is_reported_not_fatal(tmp_path):
    texts = EvaluationTexts({"gone": {"task": "Gone", "path": str(tmp_path / "absent.jsonl")}}, cache_dir=str(tmp_path))
    summary = texts.describe(texts.find(CLEAN, "data.source"))
    assert "gone" in summary["unchecked"] and summary["contaminated_texts"] == 0


def test_task_references_take_every_file_based_task():
    tasks = {
        "so": {"_target_": "embedexp.evaluation.tasks.jsonl_task", "name": "SO", "path": "/x/so.jsonl.gz"},
        "deb": {"_target_": "embedexp.evaluation.tasks.debian_section_task", "name": "Deb", "field": "long"},
        "hub": {"_target_": "embedexp.evaluation.tasks.mteb_task", "name": "ArxivClusteringS2S"},
    }
    found = task_references(tasks)
    assert set(found) == {"tasks.so", "tasks.deb"}
    assert found["tasks.so"].path == "/x/so.jsonl.gz" and found["tasks.deb"].debian_field == "long"


def contaminated_run_config(tmp_path, titles_file, pairs):
    """A tiny training run on a pairs file, checked against the titles file only (fast and hermetic)."""
    pairs_path = tmp_path / "pairs.csv"
    pd.DataFrame(pairs, columns=["text", "text_pos"]).to_csv(pairs_path, index=False)
    overrides = [
        *TINY_OVERRIDES,
        "data=pairs_file",
        f"data.source.path={pairs_path}",
        "data.batch_size=2",
        "callbacks=none",
        "trainer.max_steps=1",
        "contamination.texts.tasks=null",
        f"contamination.texts.cache_dir={tmp_path / 'cache'}",
    ]
    cfg = compose_config("train", overrides, tmp_path / "run")
    cfg.contamination.texts.references = {"so": {"task": "StackOverflowTitlesClustering", "path": str(titles_file)}}
    return cfg


def test_training_refuses_a_pairs_file_holding_evaluation_texts(tmp_path, titles_file):
    from embedexp.cli.train import train

    cfg = contaminated_run_config(tmp_path, titles_file, [*CLEAN, (TITLES[1], "parsing argv"), *CLEAN])
    with pytest.raises(DataError, match=r"data\.source: 1 training texts repeat StackOverflowTitlesClustering"):
        train(cfg)
    written = json.loads((tmp_path / "run" / "contamination.json").read_text())
    assert written["counts"] == {"data.source": {"StackOverflowTitlesClustering": {"exact": 1}}}


def test_contamination_command_checks_a_run_against_named_files(tmp_path, titles_file, monkeypatch, capsys):
    from omegaconf import OmegaConf

    from embedexp.cli.contamination import main

    monkeypatch.setenv("EMBEDEXP_CACHE_DIR", str(tmp_path / "user_cache"))
    cfg = contaminated_run_config(tmp_path, titles_file, [*CLEAN, ("sql joins", TITLES[2] + "?"), *CLEAN])
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    labelled = tmp_path / "labelled.csv"
    pd.DataFrame({"text": [TITLES[2], "unrelated"], "label": ["a", "b"]}).to_csv(labelled, index=False)
    main([str(run), str(labelled), str(titles_file)])  # columns found: text, then sentences
    result = json.loads((run / "contamination_files.json").read_text())
    assert result["pairs"] == 5
    assert result["files"][str(labelled)]["counts"] == {"data.source": {"labelled.csv": {"exact": 1}}}
    assert result["files"][str(titles_file)]["column"] == "sentences"
    assert result["files"][str(titles_file)]["contaminated_texts"] == 1
    assert "1 training texts repeat one" in capsys.readouterr().out


def test_mixture_drops_contaminated_pairs_of_a_source_that_cannot_itself(tmp_path, titles_file):
    from embedexp.data.mixture import MixtureDataModule

    path = tmp_path / "synthetic.csv"
    rows = [(TITLES[3], "css centering"), *[(f"clean anchor {i} {'x' * i}", f"clean positive {i}") for i in range(9)]]
    pd.DataFrame(rows, columns=["text", "text_pos"]).to_csv(path, index=False)
    texts = {
        "_target_": "embedexp.data.contamination.EvaluationTexts",
        "cache_dir": str(tmp_path / "cache"),
        "references": {"so": {"task": "StackOverflowTitlesClustering", "path": str(titles_file)}},
    }
    source = {"_target_": "embedexp.data.pairs.PairFile", "path": str(path), "drop_contaminated": texts}
    data = MixtureDataModule({"synthetic": source}, total_pairs=100, batch_size=2)
    data.setup("fit")
    assert data.counts == {"synthetic": 9} and TITLES[3] not in {p[0] for p in data.train_set.pairs}
