"""The task set is part of every result; missing task data is an error unless optional; the shared data can be
rebuilt from its public sources (parsing tested on small local files, no network)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pandas as pd
import pytest

from embedexp.analysis.report.build import build_report
from embedexp.cli.train import train
from embedexp.core.errors import DataError
from embedexp.core.instantiate import instantiate_group
from embedexp.data.fetch_shared import fetch_shared, parse_newsgroup_post
from embedexp.evaluation.score_cache import task_set_record
from embedexp.evaluation.tasks import build_tasks

from .conftest import TINY_OVERRIDES, compose_config
from .test_report import write_job

POSTS = {
    "20news-bydate-train/sci.space/2": b"From: a@b\r\nSubject: Re: Shuttle launch\r\nLines: 2\r\n\r\nIt flew.\r\n",
    "20news-bydate-train/sci.space/10": b"From: c@d\nSubject: Orbits\n\nKepler\n",
    "20news-bydate-test/rec.autos/7": b"Subject: Caf\xe9 racer\nFrom: e@f\n\nFast.\n",
    "20news-bydate-train/rec.autos/README": b"not a post",
}


def local_sources(root):
    """Small local copies laid out like the public sources (`--source-dir`)."""
    root.mkdir(parents=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in POSTS.items():
            info = tarfile.TarInfo(f"text_gcn-master/data/20ng/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "text_gcn.tar.gz").write_bytes(buffer.getvalue())
    (root / "StackOverflow" / "rawText").mkdir(parents=True)
    (root / "StackOverflow" / "rawText" / "title_StackOverflow.txt").write_text("How to grep?\nLINQ join\n")
    (root / "StackOverflow" / "rawText" / "label_StackOverflow.txt").write_text("10\n18\n")
    (root / "STC2" / "dataset").mkdir(parents=True)
    (root / "STC2" / "dataset" / "Biomedical.txt").write_text("effects of aging\n\nfibrin activity\n")
    (root / "STC2" / "dataset" / "Biomedical_gnd.txt").write_text("1\n2\n3\n")
    return root


def read_rows(path):
    """Rows of a gzipped JSON Lines file."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_fetch_shared_builds_the_task_files_from_local_copies(tmp_path):
    counts = fetch_shared(tmp_path / "out", local_sources(tmp_path / "src"))
    assert counts == {
        "20ng_subjects.jsonl.gz": 3,
        "20ng_full.jsonl.gz": 3,
        "stackoverflow_titles.jsonl.gz": 2,
        "biomedical_titles.jsonl.gz": 2,
    }
    # train before test, groups sorted, numeric ids in numeric order; Latin-1 decoded; the README is no post
    assert read_rows(tmp_path / "out" / "20ng_subjects.jsonl.gz") == [
        {"sentences": "Re: Shuttle launch", "labels": "sci.space"},
        {"sentences": "Orbits", "labels": "sci.space"},
        {"sentences": "Café racer", "labels": "rec.autos"},
    ]
    assert read_rows(tmp_path / "out" / "20ng_full.jsonl.gz")[0]["body"] == "It flew."
    assert read_rows(tmp_path / "out" / "stackoverflow_titles.jsonl.gz") == [
        {"sentences": "How to grep?", "labels": "10"},
        {"sentences": "LINQ join", "labels": "18"},
    ]
    assert [r["labels"] for r in read_rows(tmp_path / "out" / "biomedical_titles.jsonl.gz")] == ["1", "3"]
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging files left


def test_fetch_shared_refuses_texts_and_labels_that_do_not_pair(tmp_path):
    src = local_sources(tmp_path / "src")
    (src / "StackOverflow" / "rawText" / "label_StackOverflow.txt").write_text("10\n")
    with pytest.raises(DataError, match="title_StackOverflow.txt: 2 texts but 1 labels"):
        fetch_shared(tmp_path / "out", src)
    assert parse_newsgroup_post(b"Subject: x\r\n\r\nbody\r\nline\r\n") == ("x", "body\nline")


def test_missing_shared_data_is_an_error_naming_file_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDEXP_SHARED_DATA", str(tmp_path / "empty"))
    cfg = compose_config("train", TINY_OVERRIDES, tmp_path / "run")
    with pytest.raises(DataError) as error:
        instantiate_group(cfg.callbacks, cfg.tasks)
    message = str(error.value)
    assert message.startswith(f"tasks.twenty_newsgroups: data file {tmp_path / 'empty' / '20ng_subjects.jsonl.gz'}")
    assert "python -m embedexp fetch_shared" in message and "tasks=offline_debian" in message
    assert "tasks.twenty_newsgroups.optional=true" in message
    # the Debian-only list needs no shared data
    debian = build_tasks(compose_config("train", TINY_OVERRIDES + ["tasks=offline_debian"], tmp_path / "d").tasks)
    assert [t.metadata.name for t in debian] == ["DebianShortDescSectionClustering", "DebianLongDescSectionClustering"]


def test_optional_task_left_out_is_recorded_and_never_mixed_in_the_report(tmp_path, monkeypatch):
    full_cfg = compose_config("train", TINY_OVERRIDES, tmp_path / "unused")
    full_set = task_set_record(instantiate_group(full_cfg.callbacks, full_cfg.tasks)[0].tasks)  # both tiny tasks
    monkeypatch.setenv("EMBEDEXP_SHARED_DATA", str(tmp_path / "empty"))
    overrides = TINY_OVERRIDES + [
        "tasks.twenty_newsgroups.optional=true",
        "data.batch_size=8",
        "data.source.max_pairs=16",
        "data.source.text_field=short",
        "callbacks.clustering_eval.at_start=false",
        f"callbacks.clustering_eval.zero_shot_cache_dir={tmp_path / 'zs'}",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "sweep" / "1"))
    scored = metrics["task_set"]
    assert [t["name"] for t in scored["tasks"]] == ["DebianShortDescSectionClustering"]
    assert scored["tasks"][0] == next(t for t in full_set["tasks"] if t["name"] == scored["tasks"][0]["name"])
    assert scored["id"] != full_set["id"] and "val/TwentyNewsgroupsSubjectsClustering" not in metrics
    table = pd.read_csv(tmp_path / "sweep" / "1" / "clustering_results.csv")
    assert set(table["task_set"]) == {scored["id"]}

    write_job(tmp_path / "sweep", 0, ["seed=1"], {"clustering_mean": 0.9}, seed=1, task_set=full_set)
    paths = build_report([tmp_path / "sweep"], tmp_path / "report", plot=False)
    report = pd.read_csv(paths["csv"])
    assert sorted(report["config"]) == sorted(f"all runs [tasks {s['id']}]" for s in (full_set, scored))
    assert set(report["n"]) == {1}
    assert "## Task sets differ (2)" in paths["md"].read_text()


def test_n_kmeans_runs_is_mtebs_n_clusters_and_the_old_key_still_reads(tmp_path, caplog):
    from embedexp.evaluation.tasks import jsonl_task

    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"sentences": f"text {i}", "labels": i % 2}) + "\n" for i in range(8)))
    assert jsonl_task("T", str(path), n_kmeans_runs=4).n_clusters == 4
    assert jsonl_task("T", str(path), n_bootstrap=2).n_clusters == 2 and "now called n_kmeans_runs" in caplog.text
