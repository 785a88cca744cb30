"""A model soup of LoRA runs (Wortsman et al. 2022; EmbeddingGemma souped its runs): the adapters of runs that embed
the same way, averaged with peft's `add_weighted_adapter`, saved as one adapter folder with its manifest.

`combination=cat` (default) is exact: the concatenated adapter of rank sum(r) computes the weighted mean of the runs'
weight updates, i.e. the average of the merged models. `linear` averages the A and B matrices (rank r, not the mean
update), `svd` truncates the exact mean to rank r. Runs whose manifests differ in base model, pooling, prompt,
LoRA placement, attention, max length or adapted layers are refused, naming the run and what differs.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from embedexp.core.errors import ConfigError
from embedexp.export.resolve import SOURCE_KEYS, OpenedModel, open_model
from embedexp.model.manifest import backbone_identity, complete, read_manifest, write_manifest
from embedexp.model.pooling import POOLING_FOLDER

log = logging.getLogger(__name__)
COMBINATIONS = ("cat", "linear", "svd")
# what two ingredients must share (LoRA dropout only acts in training: not compared)
SAME = ("base_model", "backbone", "init_adapter", "lora", "attention_mode", "prompt", "pooling", "max_length")
SAME += ("padding_side", "adapted_layers")
SOUP_ADAPTER = "soup"


def adapter_folder(value: Any, index: int) -> Path:
    """The adapter of `runs[index]`: a training run's `adapter/`, or an adapter folder itself."""
    path = Path(str(value))
    for folder in (path / "adapter", path):
        if (folder / "adapter_config.json").is_file():
            return folder
    raise ConfigError(f"runs[{index}]={str(value)!r}: no LoRA adapter there (a finished training run has adapter/)")


def comparable(manifest: dict[str, Any], key: str) -> Any:
    """The part of a manifest two ingredients must share (the backbone without loading options, LoRA without
    dropout, the base model's facts)."""
    value = manifest.get(key)
    if key == "backbone":
        return backbone_identity(value or {})
    if key == "lora":
        return {k: v for k, v in (value or {}).items() if k != "dropout"}
    return value


def check_same(manifests: Sequence[dict[str, Any] | None], folders: Sequence[Path]) -> None:
    """Refuse ingredients without a manifest or whose manifests differ from the first in any of `SAME`."""
    for index, manifest in enumerate(manifests):
        if manifest is None:
            raise ConfigError(f"runs[{index}]={str(folders[index])!r}: saved without a manifest (how it embeds)")
    problems = [
        f"runs[{index}]={str(folders[index])!r} differs from runs[0] in {key}: "
        f"{comparable(manifests[0], key)!r} vs {comparable(manifest, key)!r}"
        for index, manifest in enumerate(manifests[1:], 1)
        for key in SAME
        if comparable(manifest, key) != comparable(manifests[0], key)
    ]
    if problems:
        raise ConfigError("a soup averages runs that embed the same way; " + "; ".join(problems))


def soup_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """One weight per run summing to 1 (null: equal weights)."""
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count or any(w < 0 for w in values) or not sum(values):
        raise ConfigError(f"soup weights={list(weights)}: one non-negative weight per run ({count}), not all zero")
    return [w / sum(values) for w in values]


def open_ingredient(cfg: DictConfig, folder: Path) -> OpenedModel:
    """The first ingredient opened as `eval adapter_path=<folder>` opens it (its manifest's model, pooling, prompt),
    with float32 frozen weights: peft gives a new adapter its base layer's dtype, and the soup is not to be rounded to
    bf16 (the evaluation opens the saved soup with the run's precisions)."""
    probe = copy.deepcopy(cfg)
    with open_dict(probe):
        for key in SOURCE_KEYS:
            probe[key] = None
        probe.adapter_path = str(folder)
    return open_model(probe, precisions=None)


def make_soup(
    cfg: DictConfig,
    runs: Sequence[Any],
    output: str | Path,
    weights: Sequence[float] | None = None,
    combination: str = "cat",
) -> dict[str, Any]:
    """Average the LoRA adapters of `runs` into the adapter folder `output`; returns its manifest."""
    if combination not in COMBINATIONS:
        raise ConfigError(f"combination={combination!r}: must be one of {COMBINATIONS}")
    if len(runs) < 2:
        raise ConfigError(f"runs={list(runs)}: a soup needs at least two runs")
    folders = [adapter_folder(run, index) for index, run in enumerate(runs)]
    manifests = [read_manifest(folder) for folder in folders]
    check_same(manifests, folders)
    shares = soup_weights(weights, len(folders))
    embedder = open_ingredient(cfg, folders[0]).embedder
    if any(True for _ in embedder.pooling.parameters()):
        raise ConfigError(f"pooling {type(embedder.pooling).__name__} has trained weights: a soup averages LoRA only")
    model = embedder.model
    names = ["default"]
    for index, folder in enumerate(folders[1:], 1):
        model.load_adapter(str(folder), adapter_name=f"run{index}")
        names.append(f"run{index}")
    model.add_weighted_adapter(names, shares, SOUP_ADAPTER, combination_type=combination)
    model.set_adapter(SOUP_ADAPTER)
    for name in names:
        model.delete_adapter(name)
    output = Path(output)
    model.save_pretrained(str(output), selected_adapters=[SOUP_ADAPTER])  # peft writes a named adapter to <output>/soup
    for path in (output / SOUP_ADAPTER).iterdir():
        shutil.move(str(path), output / path.name)
    (output / SOUP_ADAPTER).rmdir()
    embedder.tokenizer.save_pretrained(str(output))
    embedder.pooling.save(str(output / POOLING_FOLDER))
    manifest = complete(embedder)
    config = model.peft_config[SOUP_ADAPTER]
    manifest["lora"] = {**(manifest.get("lora") or {}), "r": int(config.r), "alpha": float(config.lora_alpha)}
    manifest["precision"] = manifests[0].get("precision", manifest["precision"])  # reopened as its runs computed
    manifest["soup"] = {"ingredients": [str(f) for f in folders], "weights": shares, "combination": combination}
    write_manifest(output, manifest)
    log.info("soup of %d adapters (%s) saved in %s", len(folders), combination, output)
    return manifest
