"""Poolings on hand-made hidden states, with left and right padding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embedexp.core.errors import ConfigError
from embedexp.model.pooling import POOLINGS, AttentionPooling, build_pooling

# two sequences: row 0 has 3 real tokens, row 1 has 2; hidden size 2
REAL = [torch.tensor([[1.0, 0.0], [2.0, 4.0], [3.0, -2.0]]), torch.tensor([[5.0, 1.0], [-1.0, 3.0]])]


def batch(side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad REAL to width 4 on `side` with garbage values; text mask marks all but each row's first token."""
    hidden = torch.full((2, 4, 2), 99.0)
    mask = torch.zeros(2, 4, dtype=torch.long)
    text = torch.zeros(2, 4, dtype=torch.long)
    for i, row in enumerate(REAL):
        start = 4 - len(row) if side == "left" else 0
        hidden[i, start : start + len(row)] = row
        mask[i, start : start + len(row)] = 1
        text[i, start + 1 : start + len(row)] = 1
    return hidden, mask, text


EXPECTED = {
    "mean": [[2.0, 2 / 3], [2.0, 2.0]],
    "last": [[3.0, -2.0], [-1.0, 3.0]],
    # weights 1,2,3 and 1,2
    "weighted_mean": [[(1 + 4 + 9) / 6, (0 + 8 - 6) / 6], [(5 - 2) / 3, (1 + 6) / 3]],
    "max": [[3.0, 4.0], [5.0, 3.0]],
    "concat": [[3.0, -2.0, 2.0, 2 / 3], [-1.0, 3.0, 2.0, 2.0]],
}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pooling_expected_vectors(name, side):
    hidden, mask, text = batch(side)
    out = build_pooling(name)(hidden, mask, text)
    assert torch.allclose(out, torch.tensor(EXPECTED[name]), atol=1e-6)


@pytest.mark.parametrize("side", ["left", "right"])
def test_exclude_prompt_pools_text_tokens_only(side):
    hidden, mask, text = batch(side)
    out = build_pooling("mean", exclude_prompt=True)(hidden, mask, text)
    assert torch.allclose(out, torch.tensor([[2.5, 1.0], [-1.0, 3.0]]))
    first = build_pooling("last", exclude_prompt=True)(hidden, mask, text)
    assert torch.allclose(first, torch.tensor(EXPECTED["last"]))


def test_exclude_prompt_falls_back_when_row_has_no_text():
    hidden, mask, text = batch("right")
    text[1] = 0
    out = build_pooling("mean", exclude_prompt=True)(hidden, mask, text)
    assert torch.allclose(out[1], torch.tensor([2.0, 2.0]))


@pytest.mark.parametrize("side", ["left", "right"])
def test_attention_pooling_weights_tokens_by_attention(side):
    hidden, mask, text = batch(side)
    attention = torch.zeros(2, 4)
    real_positions = [mask[i].nonzero().flatten() for i in range(2)]
    # row 0: sink gets 0.7, then 0.1 and 0.2; row 1: sink 0.9, then 0.1
    for i, weights in enumerate(([0.7, 0.1, 0.2], [0.9, 0.1])):
        attention[i, real_positions[i]] = torch.tensor(weights)
    out = AttentionPooling()(hidden, mask, text, attention)
    expected_row0 = (0.1 * REAL[0][1] + 0.2 * REAL[0][2]) / 0.3
    assert torch.allclose(out[0], expected_row0, atol=1e-6)
    assert torch.allclose(out[1], REAL[1][1], atol=1e-6)
    with_sink = AttentionPooling(keep_sink=True)(hidden, mask, text, attention)
    assert torch.allclose(with_sink[1], 0.9 * REAL[1][0] + 0.1 * REAL[1][1], atol=1e-6)


def test_attention_pooling_requires_attention():
    hidden, mask, text = batch("right")
    with pytest.raises(ValueError, match="attention"):
        AttentionPooling()(hidden, mask, text)


def test_unknown_pooling_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        build_pooling("median")
    for name in POOLINGS:
        assert name in str(info.value)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    batch_size=st.integers(1, 3),
    width=st.integers(1, 6),
    exclude_prompt=st.booleans(),
    name=st.sampled_from(sorted(POOLINGS)),
)
def test_pooling_never_nan_for_masks_with_a_token(data, batch_size, width, exclude_prompt, name):
    rows = [data.draw(st.lists(st.booleans(), min_size=width, max_size=width).filter(any)) for _ in range(batch_size)]
    mask = torch.tensor(rows, dtype=torch.long)
    text = torch.tensor(
        [data.draw(st.lists(st.booleans(), min_size=width, max_size=width)) for _ in range(batch_size)],
        dtype=torch.long,
    )
    hidden = torch.randn(batch_size, width, 3)
    attention = torch.softmax(torch.randn(batch_size, width), dim=-1)
    sized = {"hidden_size": 3, "num_heads": 1, "num_latents": 4} if name == "latent_attention" else {}
    pooling = build_pooling(name, exclude_prompt=exclude_prompt, **sized)
    out = pooling(hidden, mask, text, attention)
    assert torch.isfinite(out).all()
