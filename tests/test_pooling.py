"""Poolings on hand-made hidden states, with left and right padding; their options, saving and loading."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st

from embedexp.core.errors import ConfigError
from embedexp.model.pooling import (
    ConcatPooling,
    FinalTokenAttentionPooling,
    LastTokenPooling,
    MaxPooling,
    MeanPooling,
    WeightedMeanPooling,
)

from .conftest import compose_config
from .test_configs import options
from .user_poolings import PowerMeanPooling

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
    MeanPooling: [[2.0, 2 / 3], [2.0, 2.0]],
    LastTokenPooling: [[3.0, -2.0], [-1.0, 3.0]],
    # weights 1,2,3 and 1,2
    WeightedMeanPooling: [[(1 + 4 + 9) / 6, (0 + 8 - 6) / 6], [(5 - 2) / 3, (1 + 6) / 3]],
    MaxPooling: [[3.0, 4.0], [5.0, 3.0]],
    ConcatPooling: [[3.0, -2.0, 2.0, 2 / 3], [-1.0, 3.0, 2.0, 2.0]],
}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling_class", list(EXPECTED), ids=lambda c: c.__name__)
def test_pooling_expected_vectors(pooling_class, side):
    hidden, mask, text = batch(side)
    out = pooling_class().pool_tokens(hidden, mask, text)
    assert torch.allclose(out, torch.tensor(EXPECTED[pooling_class]), atol=1e-6)


@pytest.mark.parametrize("side", ["left", "right"])
def test_exclude_prompt_pools_text_tokens_only(side):
    hidden, mask, text = batch(side)
    out = MeanPooling(exclude_prompt=True).pool_tokens(hidden, mask, text)
    assert torch.allclose(out, torch.tensor([[2.5, 1.0], [-1.0, 3.0]]))
    first = LastTokenPooling(exclude_prompt=True).pool_tokens(hidden, mask, text)
    assert torch.allclose(first, torch.tensor(EXPECTED[LastTokenPooling]))


def test_exclude_prompt_falls_back_when_row_has_no_text():
    hidden, mask, text = batch("right")
    text[1] = 0
    out = MeanPooling(exclude_prompt=True).pool_tokens(hidden, mask, text)
    assert torch.allclose(out[1], torch.tensor([2.0, 2.0]))


@pytest.mark.parametrize("side", ["left", "right"])
def test_attention_pooling_weights_tokens_by_attention(side):
    hidden, mask, text = batch(side)
    attention = torch.zeros(2, 4)
    real_positions = [mask[i].nonzero().flatten() for i in range(2)]
    # row 0: sink gets 0.7, then 0.1 and 0.2; row 1: sink 0.9, then 0.1
    for i, weights in enumerate(([0.7, 0.1, 0.2], [0.9, 0.1])):
        attention[i, real_positions[i]] = torch.tensor(weights)
    out = FinalTokenAttentionPooling().pool_tokens(hidden, mask, text, attention)
    expected_row0 = (0.1 * REAL[0][1] + 0.2 * REAL[0][2]) / 0.3
    assert torch.allclose(out[0], expected_row0, atol=1e-6)
    assert torch.allclose(out[1], REAL[1][1], atol=1e-6)
    with_sink = FinalTokenAttentionPooling(keep_sink=True).pool_tokens(hidden, mask, text, attention)
    assert torch.allclose(with_sink[1], 0.9 * REAL[1][0] + 0.1 * REAL[1][1], atol=1e-6)


def test_attention_pooling_requires_attention():
    hidden, mask, text = batch("right")
    with pytest.raises(ValueError, match="attention"):
        FinalTokenAttentionPooling().pool_tokens(hidden, mask, text)


POOLING_CONFIGS = {name: compose_config("train", [f"pooling={name}"], ".").pooling for name in options("pooling")}


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    batch_size=st.integers(1, 3),
    width=st.integers(1, 6),
    exclude_prompt=st.booleans(),
    name=st.sampled_from(sorted(POOLING_CONFIGS)),
)
def test_pooling_is_finite_and_ignores_padding_for_masks_with_a_token(data, batch_size, width, exclude_prompt, name):
    rows = [data.draw(st.lists(st.booleans(), min_size=width, max_size=width).filter(any)) for _ in range(batch_size)]
    mask = torch.tensor(rows, dtype=torch.long)
    text = torch.tensor(
        [data.draw(st.lists(st.booleans(), min_size=width, max_size=width)) for _ in range(batch_size)],
        dtype=torch.long,
    )
    hidden = torch.randn(batch_size, width, 3)
    attention = torch.softmax(torch.randn(batch_size, width), dim=-1)
    sized = {"hidden_size": 3, "num_heads": 1, "num_latents": 4} if name == "latent_attention" else {}
    pooling = instantiate(POOLING_CONFIGS[name], exclude_prompt=exclude_prompt, **sized)
    out = pooling.pool_tokens(hidden, mask, text, attention)
    assert torch.isfinite(out).all()
    # padding is never read: huge values at masked-out positions change nothing
    padded = torch.where(mask.bool().unsqueeze(-1), hidden, torch.full_like(hidden, 1e6))
    assert torch.allclose(pooling.pool_tokens(padded, mask, text, attention), out, atol=1e-5)


class ForgetfulPooling(MeanPooling):
    """Takes an option but does not keep it: it could not be saved or cached faithfully."""

    def __init__(self, scale: float = 1.0, exclude_prompt: bool = False) -> None:
        super().__init__(exclude_prompt)


def test_a_subclass_constructor_options_are_its_config_keys():
    assert PowerMeanPooling.config_keys == ["power", "exclude_prompt"]  # nothing listed by hand
    assert PowerMeanPooling(power=3.0).get_config_dict() == {"power": 3.0, "exclude_prompt": False}
    assert FinalTokenAttentionPooling(attention_layers=(-2, -1)).get_config_dict() == {
        "exclude_prompt": False,
        "attention_layers": [-2, -1],  # JSON values
        "keep_sink": False,
        "layer": -1,  # the base class's options, passed through **kwargs
        "layer_norm": True,
    }
    with pytest.raises(ConfigError, match=r"ForgetfulPooling: constructor option\(s\) \['scale'\] are not kept"):
        ForgetfulPooling(scale=2.0).get_config_dict()


@pytest.mark.parametrize("name", sorted(POOLING_CONFIGS))
def test_save_and_load_rebuild_every_pooling_with_its_options_and_weights(name, tmp_path):
    sized = {"hidden_size": 8, "num_heads": 2, "num_latents": 4} if name == "latent_attention" else {}
    pooling = instantiate(POOLING_CONFIGS[name], exclude_prompt=True, **sized)
    with torch.no_grad():
        for parameter in pooling.parameters():  # trained-looking weights (latent attention)
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    pooling.save(str(tmp_path / "pooling"))
    written = sorted(p.name for p in (tmp_path / "pooling").iterdir())
    assert written == (["config.json", "model.safetensors"] if pooling.has_weights else ["config.json"])
    loaded = type(pooling).load(str(tmp_path / "pooling"))
    assert loaded.get_config_dict() == pooling.get_config_dict() and loaded.exclude_prompt
    hidden, mask, text = batch("right")
    hidden = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(2))
    attention = torch.softmax(torch.randn(2, 4, generator=torch.Generator().manual_seed(3)), dim=-1)
    assert torch.equal(
        loaded.pool_tokens(hidden, mask, text, attention), pooling.pool_tokens(hidden, mask, text, attention)
    )


def test_a_user_pooling_round_trips_through_its_folder(tmp_path):
    PowerMeanPooling(power=3.0, exclude_prompt=True).save(str(tmp_path))
    loaded = PowerMeanPooling.load(str(tmp_path))
    assert (loaded.power, loaded.exclude_prompt) == (3.0, True)
    (tmp_path / "config.json").unlink()  # e.g. a folder from before poolings saved their options
    with pytest.raises(ConfigError, match=r"no config\.json; not a pooling folder"):
        PowerMeanPooling.load(str(tmp_path))
    (tmp_path / "config.json").write_text('{"power": 3.0, "colour": "red"}')
    with pytest.raises(ConfigError, match=r"config\.json: does not fit .*PowerMeanPooling.*colour"):
        PowerMeanPooling.load(str(tmp_path))


def test_attention_layers_are_told_apart_from_the_pooled_layer(tmp_path):
    """`attention_layers` weigh the tokens, `layer` is pooled; a folder saved as `layers` before the rename loads."""
    FinalTokenAttentionPooling(attention_layers=(0,), layer=1).save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["attention_layers"], config["layer"]) == ([0], 1)
    config["layers"] = config.pop("attention_layers")
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert FinalTokenAttentionPooling.load(str(tmp_path)).attention_layers == (0,)
