"""Intermediate-layer pooling (`pooling.layer`, `pooling.layer_norm`): the states of any decoder layer, raw or
normed, for every pooling; LoRA below that layer; the prefix cache; the exported forms."""

from __future__ import annotations

import pytest
import torch
from omegaconf import open_dict

from embedexp.core.errors import ConfigError
from embedexp.model.build import build_embedder

from .conftest import compose_config
from .export_helpers import TEXTS, export, make_run

THREE_LAYERS = ["model.backbone.num_hidden_layers=3", "model.lora.last_n_layers=1"]


def layer_outputs(embedder, texts: list[str]) -> list[torch.Tensor]:
    """Each decoder layer's output for the texts (forward hooks: independent of embedexp's own path)."""
    decoder = embedder.model.get_base_model()
    captured = []
    handles = [layer.register_forward_hook(lambda _m, _a, out: captured.append(out)) for layer in decoder.layers]
    try:
        batch = embedder.tokenize(texts)
        positions = (batch.attention_mask.cumsum(dim=1) - 1).clamp_min(0)
        with torch.no_grad():
            decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions)
    finally:
        for handle in handles:
            handle.remove()
    return [out[0] if isinstance(out, tuple) else out for out in captured], batch


@pytest.mark.parametrize("layer_norm", [True, False])
@pytest.mark.parametrize("packed", [True, False])
def test_a_pooling_reads_the_states_of_its_layer(tmp_path, packed, layer_norm):
    cfg = compose_config("train", ["model=tiny", *THREE_LAYERS, "pooling=mean", "pooling.layer=-2"], tmp_path)
    with open_dict(cfg):
        cfg.pooling.layer_norm = layer_norm
    embedder = build_embedder(cfg, packed=packed)
    assert embedder.pooling.layer == 1  # stored as the absolute index
    outputs, batch = layer_outputs(embedder, TEXTS)
    states = outputs[1]
    if layer_norm:
        states = embedder.model.get_base_model().norm(states)
    mask = batch.attention_mask.unsqueeze(-1).float()
    expected = (states * mask).sum(dim=1) / mask.sum(dim=1)
    with torch.no_grad():
        vectors = embedder.embed(TEXTS)
    assert torch.allclose(vectors, expected, atol=1e-5)
    last = (embedder.model.get_base_model().norm(outputs[2]) * mask).sum(dim=1) / mask.sum(dim=1)
    assert not torch.allclose(vectors, last, atol=1e-3)


def test_lora_ends_at_the_pooled_layer_and_the_prefix_cache_serves_it(tmp_path):
    cfg = compose_config("train", ["model=tiny", *THREE_LAYERS, "pooling=last", "pooling.layer=1"], tmp_path)
    embedder = build_embedder(cfg)
    trained = [name for name, param in embedder.model.named_parameters() if param.requires_grad]
    adapted = {int(name.split(".layers.")[1].split(".")[0]) for name in trained}
    assert adapted == {1}  # last_n_layers=1 counts down from the pooled layer, not from the top
    with torch.no_grad():
        for name, param in embedder.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    plain = embedder.encode(TEXTS * 2, batch_size=4)
    cache = embedder.enable_prefix_cache()
    assert cache.split == 1
    embedder.encode(TEXTS * 2, batch_size=4)
    cached = embedder.encode(TEXTS * 2, batch_size=4)
    assert cache.verified and cache.hits > 0
    assert torch.allclose(torch.tensor(cached), torch.tensor(plain), atol=1e-5)


def test_a_layer_outside_the_decoder_is_a_config_error(tmp_path):
    cfg = compose_config("train", ["model=tiny", "pooling=mean", "pooling.layer=7"], tmp_path)
    with pytest.raises(ConfigError, match=r"pooling.layer=7: this decoder has layers 0..1"):
        build_embedder(cfg)


def test_exports_of_an_intermediate_layer_pooling_reproduce_it(tmp_path):
    run = make_run(tmp_path / "run", [*THREE_LAYERS, "pooling=mean", "pooling.layer=1"])
    results = export(run, tmp_path / "export")
    assert set(results) == {"adapter", "merged", "sentence_transformers"}
    assert all(result["min_cosine"] > 0.9999 for result in results.values())  # each form's self-check vs training


def test_a_raw_layer_pooling_exports_only_its_adapter(tmp_path):
    run = make_run(tmp_path / "run", [*THREE_LAYERS, "pooling=mean", "pooling.layer=1", "pooling.layer_norm=false"])
    assert export(run, tmp_path / "adapter_only", "formats=[adapter]")["adapter"]["min_cosine"] > 0.9999
    with pytest.raises(ConfigError, match="pooling.layer_norm=false"):
        export(run, tmp_path / "export")


def test_a_user_pooling_passing_options_on_takes_the_layer_options():
    from embedexp.model.pooling import MeanPooling, Pooling

    class ScaledMean(MeanPooling):
        """A user pooling with one option of its own and the base options passed on."""

        def __init__(self, scale: float = 1.0, **options) -> None:
            super().__init__(**options)
            self.scale = scale

    assert ScaledMean.config_keys == ["scale", "exclude_prompt", "layer", "layer_norm"]
    pooling = ScaledMean(scale=2.0, layer=5, layer_norm=False)
    assert pooling.get_config_dict() == {"scale": 2.0, "exclude_prompt": False, "layer": 5, "layer_norm": False}
    assert issubclass(ScaledMean, Pooling)
