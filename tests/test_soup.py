"""`embedexp soup`: the LoRA adapters of runs that embed alike averaged into one adapter (the exact mean of the merged
models with combination=cat), saved with its manifest, scored by eval's evaluator; unlike runs are refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from embedexp.core.errors import ConfigError
from embedexp.export.soup import make_soup
from embedexp.model.build import build_embedder
from embedexp.model.manifest import MANIFEST, save_adapter

from .conftest import TINY_OVERRIDES, command_config, compose_config

TEXTS = ["A fast text editor", "Chess engine", "Library for parsing JSON documents in C"]


def ingredient(root, name: str, seed: int, overrides: tuple[str, ...] = ()):
    """A training-run folder (config, adapter with manifest) whose LoRA weights are random, drawn with `seed`."""
    folder = root / name
    cfg = compose_config("train", [*TINY_OVERRIDES, "pooling=mean", "prompt=eol", *overrides], folder)
    embedder = build_embedder(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter_name, parameter in embedder.model.named_parameters():
            if "lora_" in parameter_name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    save_adapter(embedder, folder / "adapter")
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    return folder


def merged_weights(adapter, tmp_path) -> dict[str, torch.Tensor]:
    """The base weights with the adapter merged in, opened as `eval adapter_path=` opens it."""
    from embedexp.export.resolve import open_model

    embedder = open_model(compose_config("eval", [f"adapter_path={adapter}"], tmp_path / "open")).embedder
    return {k: v.detach().clone() for k, v in embedder.model.merge_and_unload().state_dict().items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup_runs")
    return ingredient(root, "a", 1), ingredient(root, "b", 2), ingredient(root, "c", 3)


def test_the_soup_is_the_mean_of_the_merged_runs(runs, tmp_path):
    cfg = compose_config("soup", ["runs=[a,b]", "tasks=tiny"], tmp_path)
    manifest = make_soup(cfg, runs[:2], tmp_path / "adapter")
    assert manifest["soup"]["weights"] == [0.5, 0.5] and manifest["lora"]["r"] == 8  # two rank-4 adapters side by side
    assert json.loads((tmp_path / "adapter" / MANIFEST).read_text())["soup"]["combination"] == "cat"
    soup, first, second = (
        merged_weights(folder, tmp_path) for folder in (tmp_path / "adapter", runs[0] / "adapter", runs[1] / "adapter")
    )
    adapted = [key for key in soup if "q_proj" in key or "v_proj" in key]
    assert adapted and all(torch.allclose(soup[k], (first[k] + second[k]) / 2, atol=1e-5) for k in soup)
    assert not all(torch.allclose(soup[k], first[k], atol=1e-3) for k in adapted)  # not one of the ingredients
    weighted = make_soup(cfg, runs, tmp_path / "weighted", weights=[2, 1, 1])
    assert weighted["soup"]["weights"] == [0.5, 0.25, 0.25] and weighted["lora"]["r"] == 12


def test_runs_that_embed_differently_are_refused_by_name(runs, tmp_path):
    other = ingredient(tmp_path, "none_prompt", 4, ("prompt=none",))
    cfg = compose_config("soup", ["runs=[a,b]", "tasks=tiny"], tmp_path)
    with pytest.raises(ConfigError, match=r"runs\[1\]=.*none_prompt.* differs from runs\[0\] in prompt"):
        make_soup(cfg, [runs[0], other], tmp_path / "adapter")
    with pytest.raises(ConfigError, match=r"runs\[1\]=.*nowhere.*no LoRA adapter"):
        make_soup(cfg, [runs[0], tmp_path / "nowhere"], tmp_path / "adapter")
    with pytest.raises(ConfigError, match=r"combination='mean'"):
        make_soup(cfg, runs[:2], tmp_path / "adapter", combination="mean")


def test_the_soup_command_saves_the_adapter_and_scores_it_as_eval_does(runs, tmp_path):
    from embedexp.cli.eval import evaluate
    from embedexp.cli.runner import run_job
    from embedexp.cli.soup import prepare, soup

    out = tmp_path / "soup"
    cfg = command_config("soup", [f"runs=[{runs[0]},{runs[1]}]", "tasks=tiny", "eval.precision=32"], out)
    mean = run_job(cfg, soup, prepare)  # the body of `python -m embedexp soup runs=[a,b] ...`
    souped = pd.read_csv(out / "eval_results.csv").iloc[0]
    assert souped["model"] == "soup(a, b)" and souped["clustering_mean"] == mean
    assert json.loads((out / "adapter" / MANIFEST).read_text())["soup"]["ingredients"][1] == str(runs[1] / "adapter")
    again = compose_config("eval", [f"adapter_path={out / 'adapter'}", "tasks=tiny", "eval.precision=32"], tmp_path)
    assert evaluate(again)["clustering_mean"] == mean
    alone = compose_config("eval", [f"adapter_path={runs[0] / 'adapter'}", "tasks=tiny", "eval.precision=32"], tmp_path)
    assert evaluate(alone)["clustering_mean"] != mean
