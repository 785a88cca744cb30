"""The encode entry point and the mteb wrapper for exported folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from embedexp.cli.encode import encode
from embedexp.core.errors import DataError
from embedexp.data.reader import read_texts
from embedexp.export import load_export
from embedexp.model.prompts import PromptTemplate

from .conftest import compose_config

TEXTS = ["A fast text editor.", "Chess engine?", "Library for parsing JSON documents in C", "GNU compiler collection"]


@pytest.fixture(scope="module")
def st_folder(mean_export):
    """The sentence-transformers export of the shared tiny run (mean pooling, eol prompt)."""
    return mean_export[2] / "sentence_transformers"


def test_encode_text_file_to_npy_and_csv_column_to_parquet(st_folder, tmp_path):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[:2]) + "\n\n" + "\n".join(TEXTS[2:]) + "\n")
    cfg = compose_config(
        "encode",
        [f"model_path={st_folder}", f"input={tmp_path / 'texts.txt'}", f"output={tmp_path / 'v.npy'}", "precision=32"],
        tmp_path,
    )
    vectors = np.load(encode(cfg))
    expected = load_export(st_folder).encode(TEXTS)
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32
    assert np.allclose(vectors, expected, atol=1e-6)

    pd.DataFrame({"id": [10, 11, 12, 13], "title": TEXTS}).to_csv(tmp_path / "items.csv", index=False)
    overrides = [f"model_path={st_folder}", f"input={tmp_path / 'items.csv'}", "text_column=title", "precision=32"]
    overrides += [f"output={tmp_path / 'items.parquet'}", "keep_columns=[id]", "batch_size=3"]
    table = pq.read_table(encode(compose_config("encode", overrides, tmp_path))).to_pandas()
    assert list(table.columns) == ["id", "text", "embedding"] and table["id"].tolist() == [10, 11, 12, 13]
    assert np.allclose(np.stack(table["embedding"]), expected, atol=1e-6)


def test_encode_with_the_training_module_matches_the_export(st_folder, tmp_path):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    run = st_folder.parent.parent / "run"  # the run the fixture exported
    overrides = [f"run_dir={run}", f"input={tmp_path / 'texts.txt'}", f"output={tmp_path / 'v.npy'}"]
    overrides.append("precision=32")  # the export loads in fp32; bf16 (auto on some CPUs) rounds the weights too
    vectors = np.load(encode(compose_config("encode", overrides, tmp_path)))
    assert np.sum(vectors * load_export(st_folder).encode(TEXTS), axis=1).min() > 0.9999


def test_bad_input_names_the_column(tmp_path):
    pd.DataFrame({"title": ["a", ""]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t\.csv: no text column 'text'; columns are \['title'\]"):
        read_texts(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"t\.csv: column 'title' is empty or not text in rows \[1\] \(0-based"):
        read_texts(tmp_path / "t.csv", "title")


def test_exported_folder_runs_in_mteb_with_per_task_type_prompts(st_folder):
    from hydra.utils import instantiate

    from embedexp.core.config import PROJECT_ROOT
    from embedexp.evaluation.clustering import score_tasks
    from embedexp.evaluation.exported import ExportedEncoder

    task = instantiate(compose_config("eval", ["tasks=tiny"], PROJECT_ROOT).tasks.twenty_newsgroups)
    if task is None:
        pytest.skip("shared clustering data absent")
    tasks = [task]
    encoder = ExportedEncoder(st_folder, prompts={"Clustering": "Cluster the text: {text}"})
    meta = encoder.mteb_model_meta
    assert (meta.embed_dim, meta.max_tokens, meta.similarity_fn_name) == (64, 64, "cosine")
    assert meta.name.startswith("embedexp/tiny-llama-mean-eol") and meta.n_parameters > 0
    assert meta.load_model().export.form == "sentence_transformers"
    chosen = encoder.prompt_for(tasks[0].metadata)
    assert chosen.template == "Cluster the text: {text}"
    default = ExportedEncoder(encoder.export)
    assert default.prompt_for(tasks[0].metadata).name == "eol"
    # the re-baked tokenizer gives what the Embedder gives with that template
    run = st_folder.parent.parent / "run"
    from embedexp.export.source import load_export_source

    embedder = load_export_source(compose_config("export", [f"run_dir={run}"], run / "ref")).embedder
    embedder.prompt = PromptTemplate("c", "Cluster the text: {text}")
    assert np.sum(encoder.export.encode(TEXTS, prompt=chosen) * embedder.encode(TEXTS), axis=1).min() > 0.9999
    scores = score_tasks(encoder, tasks)
    assert set(scores) == {"TwentyNewsgroupsSubjectsClustering", "clustering_mean"}
    assert scores["clustering_mean"] == scores["TwentyNewsgroupsSubjectsClustering"] > 0.01  # not a degenerate 0
