"""The real Debian corpus of this machine: training pairs never share a source package with evaluation texts."""

from __future__ import annotations

import shutil

import pytest

from embedexp.core.config import PROJECT_ROOT
from embedexp.data.debian import load_corpus
from embedexp.data.pairs import DebianPairs
from embedexp.evaluation.tasks import debian_section_task

CACHE = str(PROJECT_ROOT / ".cache" / "embedexp")
pytestmark = pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs a Debian machine (apt-cache)")


def test_pairs_and_tasks_are_disjoint_by_source_package():
    corpus = load_corpus(CACHE)
    source_of = {}
    for record in corpus:
        source_of.setdefault(record["short"], set()).add((record["source"], record["split"]))
    pairs = DebianPairs(text_field="short", max_pairs=500, seed=1, cache_dir=CACHE).load()
    task = debian_section_task("DebianShortProbe", field="short", n_docs=300, cache_dir=CACHE)
    task.load_data()
    eval_texts = set(task.dataset["test"]["sentences"])
    train_sources = {record["source"] for record in corpus if record["split"] == "train"}
    eval_sources = {record["source"] for record in corpus if record["split"] == "eval"}
    assert not train_sources & eval_sources
    assert len(pairs) == 500 and len(eval_texts) == 300
    assert all(any(split == "train" for _, split in source_of[anchor]) for anchor, _ in pairs)
    all_eval_texts = {r["short"].lower() for r in corpus if r["split"] == "eval"}
    assert not {anchor.lower() for anchor, _ in pairs} & all_eval_texts
    assert len(set(task.dataset["test"]["labels"])) >= 10
