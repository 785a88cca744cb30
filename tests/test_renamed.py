"""Old names (embedexp.core.renamed): a command line that uses one stops with the new name; saved files still load."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from embedexp.core.renamed import renamed_argument, upgrade_manifest, upgrade_run_config


@pytest.mark.parametrize(
    ("arg", "new"),
    [
        ("model.attention=bidirectional", "model.attention_mode=bidirectional"),
        ("+model.attention=causal", "model.attention_mode=causal"),
    ],
)
def test_an_old_key_names_the_new_one(arg, new):
    assert new in renamed_argument(arg)


@pytest.mark.parametrize("arg", ["model.attention_mode=bidirectional", "pooling=mean", "seed=1", "--multirun"])
def test_current_arguments_pass(arg):
    assert renamed_argument(arg) is None


def test_train_refuses_an_old_key_before_composing(capsys):
    from embedexp.cli.train import main

    with pytest.raises(SystemExit, match="renamed to `model.attention_mode`"):
        main(["model=tiny", "model.attention=bidirectional"])


def test_an_old_manifest_and_run_config_read_with_todays_names():
    manifest = upgrade_manifest({"attention": "bidirectional", "max_length": 64})
    assert manifest == {"attention_mode": "bidirectional", "max_length": 64} and upgrade_manifest(None) is None
    cfg = upgrade_run_config(OmegaConf.create({"model": {"attention": "bidirectional", "max_length": 64}}))
    assert OmegaConf.to_container(cfg.model) == {"max_length": 64, "attention_mode": "bidirectional"}


def test_an_old_pooling_option_names_the_new_one():
    assert "pooling=final_token_attention" in renamed_argument("pooling=attention")
    assert "pooling=final_token_attention" in renamed_argument("pooling=mean,attention")
    assert renamed_argument("pooling=latent_attention") is None


def test_a_pooling_saved_under_its_old_class_path_still_loads(tmp_path):
    """An old manifest's `target`, an old export's `modules.json` type and an old pooling YAML's `_target_`."""
    from hydra.utils import get_object, instantiate

    from embedexp.model.pooling import FinalTokenAttentionPooling

    old = "embedexp.model.pooling.AttentionPooling"
    assert get_object(old) is FinalTokenAttentionPooling
    pooling = instantiate({"_target_": old, "attention_layers": [0], "keep_sink": True})
    assert type(pooling) is FinalTokenAttentionPooling and pooling.attention_layers == (0,)
    pooling.save(str(tmp_path))
    assert get_object(old).load(str(tmp_path)).keep_sink
    manifest = upgrade_manifest({"pooling": {"target": old, "config": {}}, "choices": {"pooling": "attention"}})
    assert manifest["pooling"]["target"] == "embedexp.model.pooling.FinalTokenAttentionPooling"
    assert manifest["choices"] == {"pooling": "final_token_attention"}
    cfg = upgrade_run_config(OmegaConf.create({"pooling": {"_target_": old}}))
    assert cfg.pooling._target_ == "embedexp.model.pooling.FinalTokenAttentionPooling"


def test_the_old_command_names_the_new_one(capsys):
    from embedexp.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["attention", "model=tiny"])
    assert stop.value.code == 2 and "renamed to 'attention_maps'" in capsys.readouterr().err
