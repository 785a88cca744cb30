"""The one reader for text and table files (embedexp.data.reader), its errors, and every caller reading `.gz` files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from embedexp.core.errors import DataError
from embedexp.data.reader import read_table, read_texts

from .conftest import compose_config

# texts a careless reader mangles: separators, quotes, NA-like words, a number, outer spaces, non-ASCII
TEXTS = ["A fast text editor.", 'café, "quoted", commas', "tab\there", "NA", "null", "1234", "  outer spaces  "]
FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet")


def file_bytes(kind: str, frame: pd.DataFrame) -> bytes:
    """`frame` written as a `kind` file (a .txt file: its `text` column, with blank lines between)."""
    if kind == ".txt":
        return ("\n\n".join(frame["text"]) + "\n   \n").encode()
    if kind == ".parquet":
        return frame.to_parquet(index=False)
    writers = {
        ".csv": lambda: frame.to_csv(index=False),
        ".tsv": lambda: frame.to_csv(sep="\t", index=False),
        ".jsonl": lambda: frame.to_json(orient="records", lines=True, force_ascii=False),
        ".json": lambda: frame.to_json(orient="records", force_ascii=False),
    }
    return writers[kind]().encode()


def write(path, frame: pd.DataFrame):
    """Write `frame` in the format of `path`'s name, gzip'ed when it ends in .gz; returns the path."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    data = file_bytes("." + name.rsplit(".", 1)[1], frame)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("gz", ["", ".gz"])
@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_plain_and_gzipped_reads_the_same_texts(tmp_path, kind, gz):
    frame = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS})
    path = write(tmp_path / f"texts{kind}{gz}", frame)
    assert read_texts(path) == TEXTS
    table = read_table(path)
    if kind == ".txt":
        assert list(table.columns) == ["text"]
        assert read_table(path, txt_column="title")["title"].tolist() == TEXTS  # a .txt file has any column name
    else:
        assert list(table.columns) == ["id", "text"] and table["id"].tolist() == list(range(len(TEXTS)))


@pytest.mark.parametrize("name", ["codes.jsonl", "codes.json.gz", "codes.parquet"])
def test_strings_that_look_like_numbers_stay_texts(tmp_path, name):
    codes = ["0012", "1234", "2020-01-01"]
    assert read_texts(write(tmp_path / name, pd.DataFrame({"text": codes, "date": codes}))) == codes
    assert read_table(tmp_path / name)["date"].tolist() == codes  # no date parsing either


def test_missing_file_and_unsupported_suffix_name_the_file_and_key(tmp_path):
    with pytest.raises(DataError, match=r"input=.*none\.csv\.gz: file not found"):
        read_table(tmp_path / "none.csv.gz", "input")
    supported = r"use one of \.txt, \.csv, \.tsv, \.jsonl, \.json, \.parquet \(each optionally \.gz\)"
    with pytest.raises(DataError, match=r"pool=.*x\.xlsx: unsupported file type '\.xlsx'; " + supported):
        read_texts(tmp_path / "x.xlsx", key="pool")
    with pytest.raises(DataError, match=r"x\.gz: unsupported file type of 'x\.gz'"):
        read_table(tmp_path / "x.gz")


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("t.csv.gz", b"text\nnot gzip at all\n", r"cannot read as gzip'ed \.csv: BadGzipFile"),
        ("t.parquet", pd.DataFrame({"text": TEXTS}).to_parquet()[:-20], r"cannot read as \.parquet"),
        ("t.parquet.gz", gzip.compress(b"PAR1 not really"), r"cannot read as gzip'ed \.parquet"),
        ("t.jsonl", b'{"text": "a"}\n{"text": \n', r"cannot read as \.jsonl"),
        ("t.txt", b"fine\ncaf\xe9\n", r"not valid UTF-8 \(invalid continuation byte at byte \d+\)"),
        ("t.tsv.gz", gzip.compress(b"text\n\xff\xfe\n"), r"not valid UTF-8"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=rf"texts_file=.*{name.replace('.', '[.]')}: {message}"):
        read_texts(tmp_path / name, key="texts_file")


def test_missing_column_lists_the_columns_and_the_key(tmp_path):
    path = write(tmp_path / "t.jsonl.gz", pd.DataFrame({"title": ["a"], "id": [1]}))
    with pytest.raises(
        DataError,
        match=r"source\.path=.*t\.jsonl\.gz: no text column 'body'; columns are \['title', 'id'\] "
        r"\(set source\.text_column=<name>\)",
    ):
        read_texts(path, "body", "source.path", "source.text_column")


def test_empty_and_non_text_values_name_their_rows_or_are_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": value}) for value in ["a", "", "b", "   ", 5, None, "c"]))
    with pytest.raises(DataError, match=r"t\.jsonl: column 'text' is empty or not text in rows \[1, 3, 4, 5\] \(0-b"):
        read_texts(path)
    assert read_texts(path, skip_empty=True) == ["a", "b", "c"]
    many = write(tmp_path / "many.csv", pd.DataFrame({"text": ["ok"] + [""] * 12}))
    with pytest.raises(DataError, match=r"rows \[1, 2, .*, 10\] \(0-based, 12 rows in all\); row 1 holds nan"):
        read_texts(many)
    with pytest.raises(DataError, match=r"many\.csv: holds no texts \(column 'text'\)"):
        read_texts(write(tmp_path / "many.csv", pd.DataFrame({"text": [""] * 3})), skip_empty=True)
    (tmp_path / "blank.txt.gz").write_bytes(gzip.compress(b"\n  \n"))
    with pytest.raises(DataError, match=r"blank\.txt\.gz: holds no texts"):
        read_texts(tmp_path / "blank.txt.gz")


# every caller reads .gz files (each of them refused or broke on these before the one reader)


def test_pair_file_reads_gz(tmp_path):
    from embedexp.data.pairs import PairFile

    pairs = pd.DataFrame({"text": TEXTS[:3], "text_pos": TEXTS[3:6], "text_neg": [TEXTS[6], None, TEXTS[0]]})
    loaded = PairFile(str(write(tmp_path / "pairs.jsonl.gz", pairs))).load()
    assert loaded[0] == (TEXTS[0], TEXTS[3], (TEXTS[6],)) and loaded[1] == (TEXTS[1], TEXTS[4], ())
    with pytest.raises(DataError, match=r"data\.source\.path=.*pairs\.jsonl\.gz: missing column\(s\) \['text_pos'\]"):
        PairFile(str(write(tmp_path / "pairs.jsonl.gz", pairs[["text"]]))).load()


def test_mntp_text_file_reads_gz(tmp_path):
    from embedexp.data.texts import TextFile

    texts = write(tmp_path / "texts.txt.gz", pd.DataFrame({"text": TEXTS}))
    assert TextFile(str(texts)).load() == [(t.strip(), t.strip()) for t in TEXTS]


def test_synthesis_file_source_reads_gz(tmp_path):
    from embedexp.synthesis.sources import TextFileSource

    body = write(tmp_path / "texts.tsv.gz", pd.DataFrame({"id": range(len(TEXTS)), "body": TEXTS}))
    assert TextFileSource(str(body), text_column="body").load() == [t.strip() for t in TEXTS]


def test_attention_texts_file_reads_gz(tmp_path):
    from embedexp.analysis.attention_maps.analysis import load_texts

    sentences = write(tmp_path / "texts.parquet.gz", pd.DataFrame({"sentence": TEXTS}))
    assert load_texts(None, str(sentences), "sentence", max_texts=3) == [t.strip() for t in TEXTS[:3]]


def test_encode_reads_a_gzipped_table_like_the_plain_text_file(tmp_path):
    from embedexp.cli.encode import encode

    texts = TEXTS[:4]
    write(tmp_path / "texts.txt", pd.DataFrame({"text": texts}))
    write(tmp_path / "items.csv.gz", pd.DataFrame({"id": [7, 8, 9, 10], "title": texts}))
    common = ["model=tiny", "show_progress=false", "precision=32"]
    text_file = [*common, f"input={tmp_path / 'texts.txt'}", f"output={tmp_path / 'v.npy'}"]
    plain = np.load(encode(compose_config("encode", text_file, tmp_path)))
    table_file = [*common, f"input={tmp_path / 'items.csv.gz'}", "text_column=title", "keep_columns=[id]"]
    table_file.append(f"output={tmp_path / 'v.parquet'}")
    table = pd.read_parquet(encode(compose_config("encode", table_file, tmp_path)))
    assert table["id"].tolist() == [7, 8, 9, 10] and table["text"].tolist() == texts
    assert np.allclose(np.stack(table["embedding"]), plain, atol=1e-6)


def test_mine_reads_a_gzipped_pair_file_and_pool(tmp_path):
    from embedexp.synthesis.mining import mine

    write(tmp_path / "pairs.csv.gz", pd.DataFrame({"text": TEXTS[:3], "text_pos": TEXTS[3:6]}))
    write(tmp_path / "pool.txt.gz", pd.DataFrame({"text": TEXTS + ["one more candidate"]}))
    overrides = ["model=tiny", f"input={tmp_path / 'pairs.csv.gz'}", f"pool={tmp_path / 'pool.txt.gz'}"]
    summary = mine(compose_config("mine", [*overrides, "num_negatives=2", "show_progress=false"], tmp_path / "run"))
    assert summary["output"] == str(tmp_path / "pairs.mined.csv")  # .gz dropped: the writers write plain files
    assert summary["pool"] == len(TEXTS) + 1 and summary["anchors"] == 3
    assert {"text_neg_1", "text_neg_2"} <= set(pd.read_csv(summary["output"]).columns)
