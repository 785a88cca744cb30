"""Export in every form, self-checked against the training module; corrupted exports must fail and leave nothing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling as STPooling

from embedexp.export import PROBE_TEXTS, SelfCheckError, check_export, load_export
from embedexp.export.sentence_transformers import st_pooling_mode
from embedexp.model.pooling import LastTokenPooling, MaxPooling, MeanPooling, WeightedMeanPooling

from .export_helpers import TEXTS, export, make_run, reference


@pytest.fixture(scope="module")
def custom_export(tmp_path_factory):
    """final-token-attention pooling over the text tokens only: a pooling sentence-transformers lacks."""
    root = tmp_path_factory.mktemp("final_token_attention")
    overrides = ["pooling=final_token_attention", "pooling.exclude_prompt=true", "prompt=cluster_short"]
    run = make_run(root / "run", overrides)
    return run, export(run, root / "export"), root / "export"


@pytest.mark.parametrize("name", ["mean_export", "custom_export"])
def test_every_form_passes_its_selfcheck(name, request):
    run, results, output = request.getfixturevalue(name)
    assert set(results) == {"adapter", "merged", "sentence_transformers"}
    for form, result in results.items():
        manifest = json.loads((output / form / "embedexp_manifest.json").read_text())
        assert manifest["format"] == form and manifest["selfcheck"]["passed"]
        assert manifest["selfcheck"]["min_cosine"] >= 0.9999 and result["min_cosine"] >= 0.9999
        assert len(manifest["selfcheck"]["pairs"]) == 4  # export left/right x reference left/right
        card = (output / form / "README.md").read_text()
        assert "## Self-check" in card and "TaskA" in card and "```yaml" in card
    assert (output / "adapter" / "adapter_config.json").is_file()
    merged = output / "merged"
    assert not list(merged.glob("adapter_*")) and (merged / "config.json").is_file()
    assert not [k for k in load_file(str(merged / "model.safetensors")) if "lora" in k]
    assert not list(output.glob(".*"))  # no staging folders left


def test_sentence_transformers_folder_uses_plain_modules_where_they_exist(mean_export, custom_export):
    modules = json.loads((mean_export[2] / "sentence_transformers" / "modules.json").read_text())
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)
    pooling = json.loads((mean_export[2] / "sentence_transformers" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean"
    modules = json.loads((custom_export[2] / "sentence_transformers" / "modules.json").read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    assert types == ["EmbedexpTransformer", "FinalTokenAttentionPooling", "Normalize"]


@pytest.mark.parametrize("name", ["mean_export", "custom_export"])
def test_folder_is_what_sentence_transformers_saves(name, request, tmp_path):
    """Reloading the folder and saving it again with sentence-transformers changes no config or module file."""
    folder = request.getfixturevalue(name)[2] / "sentence_transformers"
    SentenceTransformer(str(folder), device="cpu", trust_remote_code=True).save(str(tmp_path), create_model_card=False)
    ours = {p.relative_to(folder) for p in folder.rglob("*.json")} - {Path("embedexp_manifest.json")}
    assert ours == {p.relative_to(tmp_path) for p in tmp_path.rglob("*.json")}
    for path in ours:
        written, saved = (json.loads((root / path).read_text()) for root in (folder, tmp_path))
        if path.name == "config_sentence_transformers.json":  # sentence-transformers reads requirements, never writes
            written.pop("requirements", None)
        assert written == saved, path


def test_plain_sentence_transformer_equals_the_embedder(mean_export):
    run, _, output = mean_export
    model = SentenceTransformer(str(output / "sentence_transformers"), device="cpu")  # plain, default prompt
    expected = reference(run)
    for side in ("left", "right"):
        model.tokenizer.padding_side = side
        vectors = model.encode(TEXTS)
        for ref in expected.values():
            assert np.sum(vectors * ref, axis=1).min() > 0.9999


@pytest.mark.parametrize(
    "pooling_class,mode",
    [
        (MeanPooling, "mean"),
        (LastTokenPooling, "lasttoken"),
        (WeightedMeanPooling, "weightedmean"),
        (MaxPooling, "max"),
    ],
)
@pytest.mark.parametrize("side", ["left", "right"])
def test_sentence_transformers_pooling_modes_equal_embedexp_poolings(pooling_class, mode, side):
    pooling = pooling_class()
    assert st_pooling_mode(pooling) == mode and st_pooling_mode(pooling_class(exclude_prompt=True)) is None
    lengths = [5, 2, 7]
    mask = torch.zeros(3, 7, dtype=torch.long)
    for row, length in enumerate(lengths):
        if side == "left":
            mask[row, 7 - length :] = 1
        else:
            mask[row, :length] = 1
    hidden = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(0))
    features = STPooling(16, mode)({"token_embeddings": hidden, "attention_mask": mask})
    assert torch.allclose(features["sentence_embedding"], pooling.pool_tokens(hidden, mask), atol=1e-6)


def test_custom_module_folder_loads_with_trust_remote_code(custom_export):
    folder = custom_export[2] / "sentence_transformers"
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(folder), device="cpu")
    vectors = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True).encode(TEXTS)
    assert np.sum(vectors * reference(custom_export[0])["right"], axis=1).min() > 0.9999


def corrupt_weight(folder):
    """Scale one decoder weight matrix, as a bad save or merge would."""
    path = folder / "model.safetensors"
    weights = load_file(str(path))
    key = next(k for k in weights if "layers.1.self_attn.v_proj.weight" in k)
    weights[key] = weights[key] * -3.0
    save_file(weights, str(path), metadata={"format": "pt"})


def wrong_pooling_mode(folder):
    """Declare max pooling where the model was trained with mean."""
    path = folder / "1_Pooling" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pooling_mode": "max"}))


def string_prompt(folder):
    """The naive export: the template's prefix as a sentence-transformers prompt, the suffix lost."""
    manifest = json.loads((folder / "embedexp_manifest.json").read_text())
    plain = load_export(folder).model.tokenizer
    from embedexp.export.tokenizer import unbake

    unbake(plain, manifest["tokenizer_original"]).save_pretrained(str(folder))
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    config.update(prompts={"eol": 'This sentence: "'}, default_prompt_name="eol")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def probe_reference(mean_export):
    """The training module's embeddings of the self-check probes (the mean/eol run)."""
    return reference(mean_export[0], list(PROBE_TEXTS))


def missing_weights(folder):
    """Lose the weights file."""
    (folder / "model.safetensors").unlink()


@pytest.mark.parametrize(
    "corrupt,message",
    [
        (corrupt_weight, "does not reproduce the training module: min cosine"),
        (wrong_pooling_mode, "does not reproduce the training module: min cosine"),
        (string_prompt, "does not reproduce the training module: min cosine"),
        (missing_weights, "could not be reloaded"),
    ],
)
def test_corrupted_export_fails_its_selfcheck(mean_export, probe_reference, tmp_path, corrupt, message):
    folder = tmp_path / "copy"
    shutil.copytree(mean_export[2] / "sentence_transformers", folder)  # passed its self-check when exported
    corrupt(folder)
    with pytest.raises(SelfCheckError, match=message):
        check_export(folder, probe_reference, list(PROBE_TEXTS))


def test_failing_selfcheck_leaves_no_export(tmp_path, monkeypatch):
    import embedexp.export.core as core

    run = make_run(tmp_path / "run", ["pooling=mean", "prompt=eol"])
    write = core.write_sentence_transformers

    def write_then_break(embedder, folder, **kwargs):
        entries = write(embedder, folder, **kwargs)
        wrong_pooling_mode(folder)
        return entries

    monkeypatch.setattr(core, "write_sentence_transformers", write_then_break)
    with pytest.raises(SelfCheckError, match="sentence_transformers export does not reproduce"):
        export(run, tmp_path / "export", "formats=[adapter,sentence_transformers]")
    assert (tmp_path / "export" / "adapter").is_dir()  # checked and finished before the failure
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["adapter"]


def test_existing_export_needs_overwrite(mean_export):
    from embedexp.core.errors import ConfigError

    run, _, output = mean_export
    with pytest.raises(ConfigError, match="overwrite=true"):
        export(run, output, "formats=[adapter]")
    before = (output / "adapter" / "embedexp_manifest.json").stat().st_mtime_ns
    export(run, output, "formats=[adapter]", "overwrite=true")
    assert (output / "adapter" / "embedexp_manifest.json").stat().st_mtime_ns != before
    assert not list(output.glob(".*"))


def test_export_from_a_trained_checkpoint(tiny_train_cfg, tmp_path):
    from omegaconf import open_dict

    from embedexp.cli.train import train

    with open_dict(tiny_train_cfg):
        tiny_train_cfg.trainer.max_epochs = 1
        tiny_train_cfg.data.source.max_pairs = 16
        del tiny_train_cfg.callbacks["clustering_eval"]
    train(tiny_train_cfg)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(tiny_train_cfg, tmp_path / ".hydra" / "config.yaml")
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    results = export(tmp_path, tmp_path / "from_ckpt", f"ckpt_path={ckpt}", "formats=[merged]")
    assert results["merged"]["min_cosine"] >= 0.9999
    vectors = load_export(tmp_path / "from_ckpt" / "merged").encode(TEXTS)
    from_adapter = reference(tmp_path)["right"]  # the same run's saved adapter/
    assert np.allclose(vectors, from_adapter, atol=1e-5)


def test_export_entry_point(mean_export, tmp_path, monkeypatch, capsys):
    """`python -m embedexp export ...`, run in-process (a subprocess would spend most of its time importing)."""
    import sys

    from embedexp.cli.export import main

    out = tmp_path / "cli"
    argv = [f"run_dir={mean_export[0]}", f"output_dir={out}", "formats=[sentence_transformers]"]
    monkeypatch.setattr(sys, "argv", ["embedexp.export", *argv, f"hydra.run.dir={tmp_path / 'hydra'}"])
    main()
    printed = capsys.readouterr().out.split("self-check min cosine")[-1].split()[0]
    assert float(printed) >= 0.9999
    assert json.loads((out / "export_summary.json").read_text())["sentence_transformers"]["min_cosine"] >= 0.9999
    assert (tmp_path / "hydra" / ".hydra" / "config.yaml").is_file()


def test_latest_run_is_the_newest_finished_one(tmp_path):
    from embedexp.core.errors import ConfigError
    from embedexp.export.source import latest_run

    with pytest.raises(ConfigError, match="no finished training run"):
        latest_run(tmp_path)
    for day, finished in [("01", True), ("02", True), ("03", False)]:
        folder = tmp_path / "train" / "runs" / f"2026-01-{day}_10-00-00"
        folder.mkdir(parents=True)
        if finished:
            (folder / "metrics.json").write_text("{}")
    assert latest_run(tmp_path).name == "2026-01-02_10-00-00"


class RunsCodeWhenUnpickled:
    """What a hostile checkpoint can hold: unpickling it calls a function (here: creates a file)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_a_pickled_callable_is_refused(mean_export, tmp_path):
    from embedexp.core.errors import ConfigError

    marker = tmp_path / "code_ran"
    ckpt = tmp_path / "hostile.ckpt"
    state = {"embedder.model.base_model.model.layers.1.self_attn.q_proj.lora_A.default.weight": torch.zeros(4, 64)}
    torch.save({"state_dict": state, "hyper_parameters": RunsCodeWhenUnpickled(marker)}, ckpt)
    refusal = re.escape(f"ckpt_path='{ckpt}': refused: the checkpoint holds objects other than tensors")
    with pytest.raises(ConfigError, match=refusal):
        export(mean_export[0], tmp_path / "out", f"ckpt_path={ckpt}", "formats=[merged]")
    assert not marker.exists() and not (tmp_path / "out").exists()
