"""`model.attention_mode=bidirectional`: a padding-only mask instead of the causal one, for every supported model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

from embedexp.core.errors import ConfigError
from embedexp.model.bidirectional import attention_mode, set_attention_mode
from embedexp.model.build import build_embedder

from .conftest import TINY_OVERRIDES, compose_config

CONFIGS = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
    "qwen3": Qwen3Config,
    "gemma3_text": Gemma3TextConfig,
}
TEXTS = ["A fast text editor.", "Chess engine", "Library for parsing JSON documents in C, with a command-line tool"]


def random_decoder(model_type: str, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """A small random decoder of the given architecture (no hub)."""
    config = CONFIGS[model_type](
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return AutoModel.from_config(config, attn_implementation=attn_implementation).eval()


def hidden(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states with mask-based positions (as the Embedder runs the decoder)."""
    positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state


def first_token_depends_on_last(model: torch.nn.Module) -> bool:
    """Whether changing only the last token of an unpadded batch changes the first token's state."""
    ids = torch.tensor([[5, 9, 11, 3, 7, 20, 8, 2], [5, 9, 11, 3, 7, 20, 8, 40]])
    states = hidden(model, ids, torch.ones_like(ids))
    return not torch.allclose(states[0, 0], states[1, 0], atol=1e-6)


@pytest.mark.parametrize("model_type", list(CONFIGS))
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_bidirectional_first_token_sees_later_tokens(model_type, implementation):
    model = random_decoder(model_type, implementation)
    assert not first_token_depends_on_last(model)  # causal: the first token sees only itself
    set_attention_mode(model, "bidirectional")
    assert attention_mode(model) == "bidirectional"
    assert first_token_depends_on_last(model)
    set_attention_mode(model, "causal")
    assert not first_token_depends_on_last(model)


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_bidirectional_mask_is_padding_only_and_sdpa_equals_eager(model_type):
    model = set_attention_mode(random_decoder(model_type, "sdpa"), "bidirectional")
    ids = torch.tensor([[5, 9, 11, 3, 7, 20], [6, 4, 30, 12, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    other_pads = ids.clone()
    other_pads[1, 4:] = torch.tensor([50, 51])
    sdpa = hidden(model, ids, mask)
    real = mask.bool()
    assert torch.allclose(sdpa[real], hidden(model, other_pads, mask)[real], atol=1e-5)  # pads are not attended
    unpadded = hidden(model, ids[:1], mask[:1])
    model.set_attn_implementation("eager")
    assert torch.allclose(sdpa[real], hidden(model, ids, mask)[real], atol=1e-5)
    assert torch.allclose(unpadded, hidden(model, ids[:1], mask[:1]), atol=1e-5)  # SDPA with no mask at all too


@pytest.fixture(scope="module")
def tiny_embedders(tmp_path_factory):
    """The tiny model's Embedder, causal and bidirectional (same weights), no LoRA."""
    folder = tmp_path_factory.mktemp("bidirectional")
    built = {}
    for mode in ("causal", "bidirectional"):
        cfg = compose_config("train", TINY_OVERRIDES + [f"model.attention_mode={mode}", "pooling=mean"], folder)
        built[mode] = build_embedder(cfg, new_lora=False)
    return built


def test_tiny_embedder_bidirectional_changes_states_and_keeps_padding_invariance(tiny_embedders):
    causal, bidirectional = tiny_embedders["causal"], tiny_embedders["bidirectional"]
    batch = causal.tokenize(TEXTS)
    causal_states, _ = causal.run(batch)
    states, _ = bidirectional.run(batch)
    first = batch.attention_mask.argmax(dim=1)
    rows = torch.arange(len(TEXTS))
    assert not torch.allclose(states[rows, first], causal_states[rows, first], atol=1e-4)
    vectors = {}
    for side in ("left", "right"):
        bidirectional.padding_side = side
        vectors[side] = bidirectional.encode(TEXTS, batch_size=len(TEXTS))
    bidirectional.padding_side = "right"
    np.testing.assert_allclose(vectors["left"], vectors["right"], atol=1e-5)
    alone = np.stack([bidirectional.encode([text])[0] for text in TEXTS])
    np.testing.assert_allclose(alone, vectors["right"], atol=1e-5)  # batching and padding do not leak into a vector


def test_attention_pooling_reads_bidirectional_attention(tmp_path):
    overrides = ["model.attention_mode=bidirectional", "pooling=final_token_attention"]
    cfg = compose_config("train", TINY_OVERRIDES + overrides, tmp_path)
    embedder = build_embedder(cfg, new_lora=False)
    assert embedder.model.config._attn_implementation == "eager"
    assert attention_mode(embedder.model) == "bidirectional"
    batch = embedder.tokenize(TEXTS[:1])
    with torch.no_grad():
        _, attention = embedder.run(batch, with_attention=True)
    weights = attention.pooled()
    assert weights.shape[-1] == batch.input_ids.shape[1]
    assert torch.isfinite(weights).all()


def test_unknown_mode_and_unsupported_architecture_name_the_key():
    with pytest.raises(ConfigError, match="model.attention_mode"):
        set_attention_mode(random_decoder("llama"), "sideways")
    gpt2 = AutoModel.from_config(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32))
    with pytest.raises(ConfigError, match="model.attention_mode=bidirectional.*gpt2"):
        set_attention_mode(gpt2, "bidirectional")


def test_zero_shot_cache_key_tells_the_attention_modes_apart(tmp_path):
    """The cached zero-shot scores of a causal model must not be served for the same weights made bidirectional."""
    from embedexp.evaluation.score_cache import configuration_key
    from embedexp.evaluation.tasks import build_tasks

    cfg = compose_config("train", TINY_OVERRIDES, tmp_path)
    tasks = build_tasks(cfg.tasks)
    embedder = build_embedder(cfg)
    causal = configuration_key(embedder, tasks, "32")
    set_attention_mode(embedder.model, "bidirectional")
    assert configuration_key(embedder, tasks, "32") != causal
    set_attention_mode(embedder.model, "causal")
    assert configuration_key(embedder, tasks, "32") == causal
