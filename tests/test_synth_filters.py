"""Each synthesis filter on crafted inputs: duplicates, length and language bounds, copies, contamination, false
negatives; and the text helpers behind them."""

from __future__ import annotations

import pytest

from embedexp.core.errors import ConfigError
from embedexp.data.overlap import OverlapIndex, shingle_hashes, word_shingle_hashes
from embedexp.evaluation.tasks import make_local_task
from embedexp.synthesis.filters import (
    ContaminationIndex,
    Filters,
    LanguageBounds,
    LengthBounds,
    TextStage,
    is_copy,
    task_texts,
)
from embedexp.synthesis.text import normalise, word_ngrams

EVAL = [
    "Library for reading and writing PNG images",
    "How do I fill a DataTable from a LINQ query in C# without looping over every row by hand?",
]


def no_filters(**overrides) -> Filters:
    """Filters with everything but the checks under test relaxed."""
    cfg = {"length": {"min_words": 1, "min_chars": 1, "max_ratio": None}, **overrides}
    return Filters.from_config(cfg, None)


def test_normalise_ignores_case_punctuation_and_spacing():
    assert normalise("  Hello,   World! ") == normalise("hello world") == "hello world"
    assert word_ngrams("a b c d", 3) == {"a b c", "b c d"}
    assert word_ngrams("a b", 3) == set()
    assert len(shingle_hashes("abc", 5)) == 1 and len(word_shingle_hashes("a b", 3)) == 1  # short: the whole text
    assert len(word_shingle_hashes("a b c d", 3)) == 2


def test_exact_and_near_duplicates_are_dropped_and_counted():
    texts = [
        "Runtime library for GNU Fortran applications (development files)",
        "runtime library for GNU fortran applications: development files!",  # exact after normalisation
        "Runtime library for GNU Fortran applications (developer files)",  # one word changed: near duplicate
        "Chess engine with a graphical interface",
    ]
    kept, counts = no_filters().filter_texts(texts)
    assert kept == [texts[0], texts[3]]
    assert counts == {"exact_duplicate": 1, "near_duplicate": 1}
    kept, counts = no_filters(dedup={"near": False}).filter_texts(texts)
    assert kept == [texts[0], texts[2], texts[3]] and counts == {"exact_duplicate": 1}


def test_near_duplicate_index_threshold():
    index = OverlapIndex(threshold=0.7)  # the one near-duplicate index, shared with the contamination checks
    index.add("Runtime library for GNU Fortran applications (development files)")
    near = index.find("Runtime library for GNU Fortran applications (developer files)")
    assert (near.kind, near.entry) == ("near", 0) and near.similarity >= 0.7
    assert index.find("A chess engine that plays at grandmaster level") is None
    assert index.find("runtime library for gnu fortran applications development files").kind == "exact"
    words = OverlapIndex(threshold=0.5, shingle=1, kind="word")  # the false-negative check's settings
    words.add("fast text editor for the terminal")
    assert words.find("a fast text editor for the terminal").kind == "near" and words.find("chess engine") is None


def test_length_bounds_and_ratio():
    bounds = LengthBounds(min_words=3, max_words=5, min_chars=10, max_chars=40, max_ratio=2.0)
    assert bounds.ok("three small words")
    assert not bounds.ok("two words")
    assert not bounds.ok("one two three four five six")
    assert not bounds.ok("a b c")  # three words but under 10 characters
    assert bounds.ratio_ok("one two three", "one two three four five six")
    assert not bounds.ratio_ok("one two", "one two three four five")
    kept, counts = Filters(length=bounds).filter_texts(["two words", "three small words"])
    assert kept == ["three small words"] and counts == {"length": 1}


def test_language_bounds():
    bounds = LanguageBounds(min_alpha_ratio=0.6, min_latin_ratio=0.9)
    assert bounds.ok("Ein Werkzeug für Festplatten")  # Latin script with umlauts
    assert not bounds.ok("Библиотека для чтения изображений")  # Cyrillic
    assert not bounds.ok("$$ 12345 {} [] 678 ==")  # hardly any letters
    kept, counts = no_filters().filter_texts(["Библиотека для чтения", "a library for images"])
    assert kept == ["a library for images"] and counts == {"language": 1}


def test_copy_of_anchor_is_dropped_unless_the_generator_allows_it():
    filters = no_filters()
    positives = filters.dedup.index()
    assert is_copy("A chess engine.", "a CHESS engine")
    assert filters.pair_reason("A chess engine.", "a CHESS engine", False, positives) == "copy_of_anchor"
    assert filters.pair_reason("A chess engine.", "A chess engine.", True, positives) is None  # dropout pairs
    assert filters.pair_reason("A chess engine.", "An engine that plays chess", False, positives) is None
    near = no_filters(copy={"enabled": True, "max_similarity": 0.9})
    assert near.pair_reason("A chess engine for Linux", "A chess engine for Linuxx", False, positives) == (
        "copy_of_anchor"
    )


def test_positive_filters_and_duplicate_positives():
    filters = Filters.from_config({"length": {"min_words": 2, "max_ratio": 2.0}}, None)
    positives = filters.dedup.index()
    anchor = "A tool to resize disk partitions"
    assert filters.pair_reason(anchor, "Resize", False, positives) == "positive_length"
    assert filters.pair_reason(anchor, "Сменить размер разделов диска", False, positives) == "positive_language"
    long = "A program that can be used for changing the size of the partitions on your disks and more"
    assert filters.pair_reason(anchor, long, False, positives) == "length_ratio"
    assert filters.pair_reason(anchor, "Resizes the partitions of a disk", False, positives) is None
    assert filters.pair_reason("Disk partition resizer", "resizes the partitions of a disk!", False, positives) == (
        "positive_exact_duplicate"
    )


def test_contamination_exact_and_ngram():
    index = ContaminationIndex(EVAL, ngram=8, threshold=0.5)
    assert index.check("library for READING and writing png images.") == "exact"
    # a training text that embeds most of an evaluation text: its 8-grams are found there
    assert index.check("How do I fill a DataTable from a LINQ query in C# without looping") == "ngram"
    assert index.check("Library for reading and writing JPEG images") is None  # short and different: no match
    assert index.check("A completely different sentence about cooking pasta with fresh tomatoes and basil") is None
    filters = Filters.from_config({}, EVAL)
    texts = ["Library for reading and writing PNG images", "A chess engine that plays at grandmaster level"]
    kept, counts = filters.filter_texts(texts)
    assert kept == texts[1:] and counts == {"contamination_exact": 1}
    positives = filters.dedup.index()
    leaked = "How do I fill a DataTable from a LINQ query in C# without looping over rows?"
    assert (
        filters.pair_reason("Filling tables from queries", leaked, False, positives) == "positive_contamination_ngram"
    )


def test_contamination_can_be_disabled_and_reads_task_texts():
    task = make_local_task("TinyTask", EVAL, ["a", "b"], "test task", n_kmeans_runs=1)
    texts = task_texts([task])
    assert texts == EVAL
    assert Filters.from_config({"contamination": {"enabled": False}}, texts).contamination is None
    with pytest.raises(ConfigError, match="filters.contamination"):
        Filters.from_config({"contamination": {"ngram": 0}}, texts)


def test_false_negative_flags_within_batches():
    anchors = [
        "Python 3 bindings for libfoo",
        "A chess engine",
        "Python 3 bindings for libbar",  # near-duplicate of the first anchor, same batch: flagged
        "Python 3 bindings for libbaz",  # next batch starts here: not flagged
    ]
    filters = Filters.from_config({"false_negatives": {"enabled": True, "threshold": 0.5, "batch_size": 3}}, None)
    assert filters.flag_false_negatives(anchors) == [False, False, True, False]
    filters.false_negatives.batch_size = None
    assert filters.flag_false_negatives(anchors) == [False, False, True, True]
    with pytest.raises(ConfigError, match="action"):
        Filters.from_config({"false_negatives": {"action": "delete"}}, None)


def test_unknown_filter_key_is_named():
    with pytest.raises(ConfigError, match="unknown key.*lenght"):
        Filters.from_config({"lenght": {}}, None)


def test_text_stage_examines_only_what_it_needs():
    texts = [f"source text number {i} about topic {i * 7}" for i in range(100)]
    stage = TextStage(no_filters(dedup={"exact": False, "near": False}), texts)
    assert len(stage.ensure(10)) == 10 and stage.position == 10
    assert stage.ensure(5) == texts[:10]  # never shrinks
    assert len(stage.ensure(1000)) == 100 and stage.position == 100
