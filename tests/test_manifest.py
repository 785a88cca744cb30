"""Saved models say what they are (embedexp.model.manifest) and open one way (embedexp.export.resolve): a reopened
adapter embeds as trained, an override that changes how it embeds is refused with both values named unless
`allow_override=true`, and a copied adapter scores what its training run reported."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from embedexp.core.errors import ConfigError
from embedexp.export.resolve import open_model
from embedexp.model.build import build_embedder
from embedexp.model.manifest import MANIFEST, save_adapter

from .conftest import TINY_OVERRIDES, command_config, compose_config
from .export_helpers import randomize_lora

TEXTS = ["A fast text editor", "Chess engine", "Library for parsing JSON documents in C"]


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory):
    """A tiny adapter (mean pooling, eol prompt, non-zero LoRA) saved as training saves it, and its vectors."""
    folder = tmp_path_factory.mktemp("saved")
    cfg = compose_config("train", TINY_OVERRIDES + ["pooling=mean", "prompt=eol"], folder)
    embedder = build_embedder(cfg)
    randomize_lora(embedder)
    save_adapter(embedder, folder / "adapter")
    return folder / "adapter", embedder.encode(TEXTS)


def test_the_adapter_records_how_it_embeds(saved_adapter):
    manifest = json.loads((saved_adapter[0] / MANIFEST).read_text())
    assert manifest["pooling"] == {
        "target": "embedexp.model.pooling.MeanPooling",
        "config": {"exclude_prompt": False, "layer": 1, "layer_norm": True},
        "folder": "pooling",
    }
    assert manifest["prompt"]["name"] == "eol" and manifest["prompt"]["template"].endswith("means in one word:")
    base = manifest["base_model"]
    assert base["name"] == "tiny-llama-h64-l2" and re.fullmatch(r"[0-9a-f]{16}", base["weights_hash"])
    assert manifest["backbone"]["_target_"] == "embedexp.model.backbone.build_tiny_llama"
    assert manifest["adapted_layers"] == [0, 1] and manifest["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert manifest["attention_mode"] == "causal" and manifest["max_length"] == 64
    assert manifest["precision"]["frozen_weights"] == "float32"


def test_a_copied_adapter_opens_as_trained_whatever_the_command_defaults(saved_adapter, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(saved_adapter[0], copy)
    # eval's defaults are SmolLM2, mean, eol: the manifest's tiny model is opened instead, no override asked
    opened = open_model(command_config("eval", [f"adapter_path={copy}"], tmp_path / "eval"))
    assert opened.embedder.name == "tiny-llama-h64-l2" and not opened.changes
    assert np.allclose(opened.embedder.encode(TEXTS), saved_adapter[1], atol=1e-6)
    assert opened.label() == str(copy)


MISMATCHES = {
    "pooling=last": ("pooling: saved MeanPooling", "asked LastTokenPooling"),
    "prompt=none": ("prompt: saved {'template': 'This sentence:", "asked {'template': '{text}'"),
    "pooling.layer=0": ("pooling.layer: saved 1", "asked 0"),
    "model=smollm2_135m": ("base_model: saved build_tiny_llama", "asked load_backbone"),
    "model.max_length=32": ("max_length: saved 64", "asked 32"),
    "model.attention_mode=bidirectional": ("attention_mode: saved 'causal'", "asked 'bidirectional'"),
}


@pytest.mark.parametrize("override", list(MISMATCHES))
def test_an_override_that_changes_the_embedding_is_refused_with_both_values(saved_adapter, tmp_path, override):
    overrides = [f"adapter_path={saved_adapter[0]}", override]
    with pytest.raises(ConfigError) as refusal:
        open_model(command_config("eval", overrides, tmp_path))
    saved, asked = MISMATCHES[override]
    assert saved in str(refusal.value) and asked in str(refusal.value) and "allow_override=true" in str(refusal.value)


def test_another_base_model_with_the_same_name_is_refused_by_its_weights(saved_adapter, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(saved_adapter[0], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["base_model"]["weights_hash"] = "0" * 16
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="base_model.weights_hash: saved '0{16}', asked '[0-9a-f]{16}'"):
        open_model(command_config("eval", [f"adapter_path={folder}"], tmp_path / "eval"))


def test_allow_override_embeds_with_the_asked_values_and_names_them(saved_adapter, tmp_path):
    overrides = [f"adapter_path={saved_adapter[0]}", "pooling=last", "allow_override=true"]
    opened = open_model(command_config("eval", overrides, tmp_path))
    assert type(opened.embedder.pooling).__name__ == "LastTokenPooling"
    assert opened.label("run") == "run(pooling=LastTokenPooling)"
    change = opened.record()["overridden"][0]
    assert change["saved"]["class"].endswith("MeanPooling") and change["asked"]["class"].endswith("LastTokenPooling")
    assert not np.allclose(opened.embedder.encode(TEXTS), saved_adapter[1], atol=1e-3)


def test_an_adapter_saved_before_manifests_opens_from_the_config_with_a_warning(saved_adapter, tmp_path, caplog):
    folder = tmp_path / "old"
    shutil.copytree(saved_adapter[0], folder)
    (folder / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING, logger="embedexp.export.resolve"):
        opened = open_model(command_config("eval", [f"adapter_path={folder}", "model=tiny"], tmp_path / "eval"))
    assert "has no manifest" in caplog.text
    assert np.allclose(opened.embedder.encode(TEXTS), saved_adapter[1], atol=1e-6)


def test_the_issue_case_eval_with_another_pooling_and_prompt_is_refused(saved_adapter, tmp_path):
    """`eval adapter_path=<run>/adapter pooling=last prompt=none` scored a model never trained; now it stops."""
    from embedexp.cli.eval import evaluate

    overrides = [f"adapter_path={saved_adapter[0]}", "pooling=last", "prompt=none", "tasks=tiny"]
    with pytest.raises(ConfigError) as refusal:
        evaluate(command_config("eval", overrides, tmp_path))
    message = str(refusal.value)
    assert "pooling: saved MeanPooling" in message and "asked LastTokenPooling" in message
    assert "prompt: saved" in message and "asked {'template': '{text}'" in message
    assert not (tmp_path / "eval_results.csv").exists()


@pytest.mark.slow  # trains the smoke experiment (tiny model, 2 epochs)
def test_a_copied_adapter_scores_what_its_run_reported(tmp_path):
    from embedexp.cli.eval import evaluate
    from embedexp.cli.train import train

    run = tmp_path / "outputs" / "smoke" / "runs" / "2026-01-01_00-00-00"
    train_overrides = ["experiment=smoke", "eval.precision=bf16", "paths.log_dir=" + str(tmp_path / "outputs")]
    cfg = compose_config("train", train_overrides, run)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    reported = train(cfg)["val/clustering_mean"]
    copy = tmp_path / "copied_adapter"
    shutil.copytree(run / "adapter", copy)
    # no model, pooling or prompt given: the manifest's; the run's tasks and evaluation precision
    overrides = [f"adapter_path={copy}", "tasks=tiny", "eval.precision=bf16"]
    scores = evaluate(command_config("eval", overrides, tmp_path / "eval"))
    assert round(scores["clustering_mean"], 4) == round(reported, 4)
    # `run_dir=latest` finds the run in its task folder (smoke), and takes its tasks and precision itself
    overrides = ["run_dir=latest", f"paths.log_dir={tmp_path / 'outputs'}"]
    again = evaluate(command_config("eval", overrides, tmp_path / "eval_latest"))
    assert round(again["clustering_mean"], 4) == round(reported, 4)
    provenance = json.loads((tmp_path / "eval_latest" / "provenance.json").read_text())
    assert provenance["model"]["run_dir"] == str(run) and provenance["model"]["overridden"] == []
    # the checkpoint carries the manifest too: it opens with no config groups matching it
    ckpt = open_model(command_config("eval", [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], tmp_path / "c"))
    adapter = open_model(command_config("eval", [f"adapter_path={copy}"], tmp_path / "a"))
    assert np.allclose(ckpt.embedder.encode(TEXTS), adapter.embedder.encode(TEXTS), atol=1e-6)


def test_a_manifest_saved_under_the_old_attention_key_still_opens_with_its_mode(saved_adapter, tmp_path):
    """Manifests written before `attention` became `attention_mode` (embedexp.core.renamed) keep their mask mode."""
    from embedexp.model.bidirectional import attention_mode

    folder = tmp_path / "old_names"
    shutil.copytree(saved_adapter[0], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["attention_mode"]
    manifest["attention"] = "bidirectional"  # as an old bidirectional run wrote it
    (folder / MANIFEST).write_text(json.dumps(manifest))
    opened = open_model(command_config("eval", [f"adapter_path={folder}"], tmp_path / "eval"))
    assert attention_mode(opened.embedder.model) == "bidirectional" and not opened.changes
    with pytest.raises(ConfigError, match="attention_mode: saved 'bidirectional'"):
        open_model(command_config("eval", [f"adapter_path={folder}", "model.attention_mode=causal"], tmp_path / "e"))
