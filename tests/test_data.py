"""Pair sources, validation errors, length-grouped batching and the Debian train/eval split."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from embedexp.core.errors import ConfigError, DataError
from embedexp.data.datamodule import LengthGroupedBatchSampler, PairDataModule
from embedexp.data.debian import clean_long_description, parse_records, split_of
from embedexp.data.noise import TextNoise
from embedexp.data.pairs import PairFile

PAIRS = [("a cat sat", "a cat was sitting"), ("stock prices fell", "markets dropped"), ("it rains", "rain falls")]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_pair_file_formats(tmp_path, suffix):
    frame = pd.DataFrame(PAIRS, columns=["text", "text_pos"])
    path = tmp_path / f"pairs{suffix}"
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    assert PairFile(str(path)).load() == PAIRS


def test_custom_column_names(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame(PAIRS, columns=["anchor", "positive"]).to_csv(path, index=False)
    assert PairFile(str(path), text_column="anchor", pos_column="positive").load() == PAIRS


def test_missing_column_names_file_and_columns(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame(PAIRS, columns=["text", "other"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"p\.csv: missing column\(s\) \['text_pos'\]"):
        PairFile(str(path)).load()


def test_empty_text_names_row(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"text": t, "text_pos": p} for t, p in PAIRS] + [{"text": "   ", "text_pos": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="row 3 column 'text' is empty"):
        PairFile(str(path)).load()


def test_zero_rows_and_bad_bytes(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,text_pos\n")
    with pytest.raises(DataError, match="zero rows"):
        PairFile(str(empty)).load()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,text_pos\n\xff\xfe caf\xe9,ok\n")
    with pytest.raises(DataError, match="bad.csv"):
        PairFile(str(bad)).load()


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="not found"):
        PairFile(str(tmp_path / "none.csv")).load()
    with pytest.raises(DataError, match="unsupported"):
        PairFile(str(tmp_path / "pairs.xlsx")).load()


def test_length_grouped_batches_cover_everything_once():
    lengths = [random.Random(i).randint(1, 500) for i in range(203)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1, mega_batch=4)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert len(batches) == len(sampler) == 203 // 8
    assert len(flat) == len(set(flat)) == 25 * 8
    # batches are length-homogeneous: spread inside a batch is far below the global spread
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 0.5 * (max(lengths) - min(lengths))
    assert list(sampler) != batches  # next epoch, new order


def test_length_grouped_batches_shard_across_ranks():
    lengths = list(range(100))
    shards = [list(LengthGroupedBatchSampler(lengths, 5, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 10
    assert not {i for b in shards[0] for i in b} & {i for b in shards[1] for i in b}


def test_batch_size_one_is_refused():
    with pytest.raises(ConfigError, match="at least 2 pairs"):
        PairDataModule(source=None, batch_size=1)


def test_datamodule_holds_out_validation(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame([(f"text {i}", f"pos {i}") for i in range(40)], columns=["text", "text_pos"]).to_csv(path, index=False)
    dm = PairDataModule(PairFile(str(path)), batch_size=4, val_pairs=8)
    dm.setup()
    assert len(dm.train_set) == 32 and len(dm.val_set) == 8
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["text"]) == len(batch["text_pos"]) == 4
    assert all(t.split()[1] == p.split()[1] for t, p in zip(batch["text"], batch["text_pos"]))


def test_noise_is_seeded_and_bounded():
    noise = TextNoise(delete_p=0.3, swap_p=0.3, char_swap_p=0.1)
    text = "the quick brown fox jumps over the lazy dog"
    assert noise(text, random.Random(1)) == noise(text, random.Random(1))
    assert noise(text, random.Random(1)) != text
    assert TextNoise(delete_p=1.0)("one two", random.Random(0)) in ("one", "two")
    with pytest.raises(ValueError, match="noise.delete_p"):
        TextNoise(delete_p=1.5)


def test_apt_record_parsing():
    text = (
        "Package: foo\nSection: utils\nDescription: short one\n line one\n .\n line two\n\nPackage: bar\nSection: net\n"
    )
    records = parse_records(text)
    assert [r["Package"] for r in records] == ["foo", "bar"]
    assert clean_long_description(records[0]["Description"].split("\n", 1)[1]) == "line one line two"


def test_split_is_deterministic_and_mixed():
    names = [f"pkg{i}" for i in range(1000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    assert 0.2 < splits.count("eval") / len(splits) < 0.4
