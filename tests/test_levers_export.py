"""Exports of the levers that change how the decoder runs or what it reads: bidirectional attention, echo prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from .export_helpers import TEXTS, export, make_run, reference

FORMS = {"adapter", "merged", "sentence_transformers"}


@pytest.fixture(scope="module")
def bidirectional_export(tmp_path_factory):
    """The mean_export recipe (mean pooling, eol prompt, same random LoRA) with bidirectional attention."""
    root = tmp_path_factory.mktemp("bidirectional")
    run = make_run(root / "run", ["pooling=mean", "prompt=eol", "model.attention_mode=bidirectional"])
    return run, export(run, root / "export"), root / "export"


def test_bidirectional_export_passes_the_selfcheck_in_every_form(bidirectional_export):
    run, results, output = bidirectional_export
    assert set(results) == FORMS
    for form, result in results.items():
        manifest = json.loads((output / form / "embedexp_manifest.json").read_text())
        assert manifest["attention_mode"] == "bidirectional" and manifest["selfcheck"]["passed"]
        assert result["min_cosine"] >= 0.9999
    assert json.loads((output / "merged" / "config.json").read_text())["is_causal"] is False


def test_bidirectional_sentence_transformers_folder_is_plain_and_not_causal(bidirectional_export, mean_export):
    run, _, output = bidirectional_export
    folder = output / "sentence_transformers"
    modules = json.loads((folder / "modules.json").read_text())
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)
    requirements = json.loads((folder / "config_sentence_transformers.json").read_text())["requirements"]
    assert "transformers" in requirements
    vectors = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, reference(run)["right"], atol=1e-4)
    causal = reference(mean_export[0])["right"]  # same weights, causal attention
    assert np.abs(vectors - causal).max() > 1e-2


@pytest.fixture(scope="module")
def echo_export(tmp_path_factory):
    """Echo prompt, mean pooling over the second copy only: the exported tokenizer repeats the text."""
    root = tmp_path_factory.mktemp("echo")
    run = make_run(root / "run", ["pooling=mean", "pooling.exclude_prompt=true", "prompt=echo"])
    return run, export(run, root / "export"), root / "export"


def test_echo_export_passes_the_selfcheck_in_every_form(echo_export):
    run, results, output = echo_export
    assert set(results) == FORMS and all(r["min_cosine"] >= 0.9999 for r in results.values())
    folder = output / "sentence_transformers"
    model = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    features = model[0].preprocess(TEXTS[:1])
    ids = features["input_ids"][0].tolist()
    copies = model[0].processor(TEXTS[0], add_special_tokens=False)["input_ids"]  # the template repeats $A
    text = copies[: len(copies) // 2]
    assert copies == text + text
    assert sum(ids[i : i + len(text)] == text for i in range(len(ids))) == 2  # the text twice among the prompt
    vectors = model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, reference(run)["right"], atol=1e-4)


def test_run_started_from_an_init_adapter_exports_in_every_form(tmp_path):
    """model.init_adapter (e.g. an MNTP adapter) is merged into the base: the adapter form must rebuild that base."""
    first = make_run(tmp_path / "mntp", ["pooling=mean", "prompt=none", "model.attention_mode=bidirectional"])
    overrides = [
        "pooling=mean",
        "prompt=none",
        "model.attention_mode=bidirectional",
        f"model.init_adapter={first}/adapter",
    ]
    run = make_run(tmp_path / "run", overrides)
    results = export(run, tmp_path / "export")
    assert set(results) == FORMS and all(r["min_cosine"] >= 0.9999 for r in results.values())
    manifest = json.loads((tmp_path / "export" / "adapter" / "embedexp_manifest.json").read_text())
    assert manifest["init_adapter"] == f"{first}/adapter"
