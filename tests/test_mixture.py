"""data=mixture: shares by weight or count, shortfalls passed on, per-source or mixed batches, the composed configs."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from embedexp.core.errors import DataError
from embedexp.data.mixture import MixtureDataModule, allocate

from .conftest import TINY_OVERRIDES, compose_config


def pair_file(tmp_path, name: str, n: int) -> str:
    """A pairs file of n distinct pairs whose texts name their source."""
    path = tmp_path / f"{name}.csv"
    pd.DataFrame(
        {"text": [f"{name} anchor {i}" for i in range(n)], "text_pos": [f"{name} pos {i}" for i in range(n)]}
    ).to_csv(path, index=False)
    return str(path)


def file_source(path: str, **mixture_keys) -> dict:
    return {"_target_": "embedexp.data.pairs.PairFile", "path": path, **mixture_keys}


def test_allocate_shares_by_weight_and_passes_shortfalls_on():
    assert allocate({"a": 1, "b": 1, "c": 2}, 100, {}) == {"a": 25, "b": 25, "c": 50}
    assert sum(allocate({"a": 1, "b": 1, "c": 1}, 100, {}).values()) == 100
    assert allocate({"a": 1, "b": 1}, 100, {"a": 10}) == {"a": 10, "b": 90}
    assert allocate({"a": 1, "b": 0}, 10, {}) == {"a": 10, "b": 0}


def test_mixture_takes_each_source_share_and_labels_pairs(tmp_path):
    sources = {
        "big": file_source(pair_file(tmp_path, "big", 200), weight=3.0),
        "small": file_source(pair_file(tmp_path, "small", 200), weight=1.0),
        "fixed": file_source(pair_file(tmp_path, "fixed", 50), pairs=10),
    }
    data = MixtureDataModule(sources, total_pairs=100, batch_size=4)
    data.setup("fit")
    assert data.counts == {"fixed": 10, "big": 68, "small": 22}  # 90 shared 3:1, largest remainder
    assert Counter(data.train_origins) == {"data.sources.big": 68, "data.sources.small": 22, "data.sources.fixed": 10}
    assert all(
        pair[0].startswith(origin.rsplit(".", 1)[1]) for pair, origin in zip(data.train_set.pairs, data.train_origins)
    )


def test_a_short_source_gives_what_it_has_and_the_rest_goes_to_the_others(tmp_path):
    sources = {"a": file_source(pair_file(tmp_path, "a", 10)), "b": file_source(pair_file(tmp_path, "b", 300))}
    data = MixtureDataModule(sources, total_pairs=100, batch_size=4)
    data.setup("fit")
    assert data.counts == {"a": 10, "b": 90}


def test_per_source_batches_hold_one_source_and_mixed_batches_do_not(tmp_path):
    sources = {name: file_source(pair_file(tmp_path, name, 64)) for name in ("x", "y")}
    per_source = MixtureDataModule(sources, total_pairs=128, batch_size=8, batching="per_source")
    per_source.setup("fit")
    batches = list(per_source.train_dataloader())
    assert len(batches) == per_source.train_batches_per_epoch() == 16
    assert all(len({text.split()[0] for text in batch["text"]}) == 1 for batch in batches)
    mixed = MixtureDataModule(sources, total_pairs=128, batch_size=8, batching="mixed")
    mixed.setup("fit")
    assert any(len({text.split()[0] for text in batch["text"]}) == 2 for batch in mixed.train_dataloader())


def test_a_source_this_machine_cannot_build_is_named_or_left_out_when_optional(tmp_path):
    good = file_source(pair_file(tmp_path, "good", 40))
    missing = file_source(str(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match=r"data\.sources\.gone: .*absent\.csv.*optional=true"):
        MixtureDataModule({"good": good, "gone": missing}, total_pairs=20, batch_size=4).setup("fit")
    data = MixtureDataModule({"good": good, "gone": {**missing, "optional": True}}, total_pairs=20, batch_size=4)
    data.setup("fit")
    assert data.counts == {"good": 20, "gone": 0}


def test_mixture_config_composes_with_weights_counts_and_sources_from_the_command_line(tmp_path):
    overrides = [
        *TINY_OVERRIDES,
        "data=mixture",
        "data.total_pairs=20000",
        "data.sources.manpages.weight=0.5",
        "~data/source@data.sources.dictionary",
        "+data/source@data.sources.mine=pairs_file",
        "data.sources.mine.path=p.csv",
    ]
    cfg = compose_config("train", overrides, tmp_path)
    assert cfg.data._target_ == "embedexp.data.mixture.MixtureDataModule" and cfg.data.total_pairs == 20000
    assert set(cfg.data.sources) == {"debian", "manpages", "docstrings", "docs", "mine"}
    assert cfg.data.sources.manpages.weight == 0.5 and cfg.data.sources.debian.pairing == "short_long"
    assert cfg.data.sources.manpages.exclude._target_ == "embedexp.data.contamination.EvaluationTexts"
    default = compose_config("train", TINY_OVERRIDES, tmp_path)
    assert default.data._target_ == "embedexp.data.datamodule.PairDataModule"
    assert default.contamination._target_ == "embedexp.data.contamination_check.ContaminationCheck"


def test_the_report_keeps_runs_on_different_mixtures_apart(tmp_path):
    import json

    import yaml

    from embedexp.analysis.report.collect import collect_runs, runs_frame

    for num, (weight, seed) in enumerate([(1.0, 1), (1.0, 2), (0.5, 1)]):
        job = tmp_path / "sweep" / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
        sources = {"debian": {"weight": 1.0}, "manpages": {"weight": weight}, "docs": {"pairs": 500}}
        config = {"data": {"total_pairs": 3000, "batching": "per_source", "sources": sources}}
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (job / "metrics.json").write_text(json.dumps({"val/clustering_mean": 0.4, "provenance": {"seed": seed}}))
    frame, _ = runs_frame(collect_runs([tmp_path / "sweep"], read_wandb=False))
    assert sorted(set(frame["training_data"])) == [
        "mixture 3000 (per_source): debian 1.0, manpages 0.5, docs 500",
        "mixture 3000 (per_source): debian 1.0, manpages 1.0, docs 500",
    ]
    assert frame.groupby("config")["seed"].nunique().sort_values().tolist() == [1, 2]
