"""Hard negatives: pair files with text_neg columns, InfoNCE with extra negatives, and `python -m embedexp mine`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from embedexp.core.errors import ConfigError, DataError
from embedexp.data.datamodule import PairDataModule
from embedexp.data.pairs import PairFile
from embedexp.synthesis.mining import mine, mine_negatives, thresholds
from embedexp.training.loss import InfoNCELoss

from .conftest import TINY_OVERRIDES, compose_config

USES = [
    ("vim", "editing text"),
    ("gcc", "compiling C"),
    ("gimp", "editing images"),
    ("nginx", "serving web pages"),
    ("mutt", "reading mail"),
    ("git", "tracking source code"),
    ("mpv", "playing video"),
    ("tar", "packing archives"),
]
ANCHORS = [f"package {name} for {use}" for name, use in USES]
POSITIVES = [text.replace("package", "tool").replace(" for ", " used for ") for text in ANCHORS]


def test_infonce_with_negatives_equals_a_hand_computation():
    a = [[1.0, 0.0], [0.0, 1.0]]
    p = [[1.0, 0.2], [0.1, 1.0]]
    n = [[0.8, 0.6], [-1.0, 0.0], [0.6, 0.8]]
    t = 0.1

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))

    expected = 0.0
    for i, anchor in enumerate(a):
        logits = [cos(anchor, c) / t for c in p + n]  # positives of the batch, then every negative
        expected += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    loss = InfoNCELoss(temperature=t)
    tensors = [torch.tensor(x) for x in (a, p, n)]
    assert loss(*tensors).item() == pytest.approx(expected / 2, rel=1e-5)
    assert loss(*tensors).item() > loss(*tensors[:2]).item()  # the negatives change (raise) the loss
    assert loss(tensors[0], tensors[1], tensors[2][:0]).item() == pytest.approx(loss(*tensors[:2]).item())


def write_pairs(path, negatives: dict[str, list] | None = None) -> None:
    """The 8 pairs, with optional negative columns, in the format of the suffix."""
    frame = pd.DataFrame({"text": ANCHORS, "text_pos": POSITIVES, **(negatives or {})})
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_pair_file_reads_wide_negative_columns_and_skips_empty_cells(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    write_pairs(path, {"text_neg_2": [None] + POSITIVES[3:] + POSITIVES[:2], "text_neg_1": POSITIVES[1:] + [None]})
    pairs = PairFile(str(path)).load()
    assert pairs[0] == (ANCHORS[0], POSITIVES[0], (POSITIVES[1],))  # text_neg_1 before text_neg_2; None skipped
    assert pairs[1] == (ANCHORS[1], POSITIVES[1], (POSITIVES[2], POSITIVES[3]))
    assert pairs[-1] == (ANCHORS[-1], POSITIVES[-1], (POSITIVES[1],))


def test_pair_file_reads_a_list_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, {"text_neg": [[POSITIVES[(i + 1) % 8], POSITIVES[(i + 2) % 8]] for i in range(8)]})
    assert PairFile(str(path)).load()[0][2] == (POSITIVES[1], POSITIVES[2])


def test_bad_negative_columns_name_the_file_and_column(tmp_path):
    path = tmp_path / "pairs.csv"
    write_pairs(path, {"text_neg_a": POSITIVES})
    with pytest.raises(DataError, match=r"pairs.csv: column 'text_neg_a'.*not a number"):
        PairFile(str(path)).load()
    write_pairs(path)
    with pytest.raises(DataError, match=r"pairs.csv: no hard-negative column 'hard'"):
        PairFile(str(path), neg_column="hard").load()
    assert len(PairFile(str(path)).load()[0]) == 2  # no negative columns: plain pairs
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, {"text_neg": [3] + POSITIVES[1:]})
    with pytest.raises(DataError, match=r"pairs.jsonl: row 0 column 'text_neg'"):
        PairFile(str(path)).load()


def test_data_module_yields_negatives_and_the_module_uses_them(tmp_path, tiny_train_cfg):
    from embedexp.model.build import build_embedder
    from embedexp.training.module import EmbeddingModule

    path = tmp_path / "pairs.parquet"
    write_pairs(path, {"text_neg_1": POSITIVES[1:] + POSITIVES[:1]})
    data = PairDataModule(PairFile(str(path)), batch_size=4)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert len(batch["text_neg"]) == 4 and set(batch["text_neg"]) <= set(POSITIVES)
    module = EmbeddingModule(build_embedder(tiny_train_cfg))
    anchors, positives, negatives = module.embed_pairs(batch)
    assert anchors.shape == positives.shape and negatives.shape == (4, anchors.shape[1])
    with_negatives = module.shared_step(batch, "train")
    plain = module.shared_step({k: v for k, v in batch.items() if k != "text_neg"}, "train")
    assert with_negatives.item() != pytest.approx(plain.item(), abs=1e-6)
    with_negatives.backward()
    plain_grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}
    module.zero_grad()
    module.grad_cache_chunk_size = 3  # GradCache embeds the negatives in its chunks too
    cached = module.training_step(batch, 0)
    assert cached.item() == pytest.approx(with_negatives.item(), abs=1e-5)
    cached.backward()
    for name, param in module.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param.grad, plain_grads[name], atol=1e-6, rtol=1e-4), name


def unit(rows: list[list[float]]) -> np.ndarray:
    """L2-normalised float32 rows."""
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_mined_negatives_skip_positives_and_respect_the_margin():
    anchors = ["a", "b", "a"]  # anchor "a" has two positives: neither may be its negative
    pool = ["pa", "pb", "pa2", "close", "far", "other"]
    pool_vectors = unit([[1, 0.0], [0, 1], [1, 0.2], [1, 0.13], [-1, 0.3], [0.5, 0.5]])
    anchor_vectors = unit([[1, 0.12], [0.1, 1], [1, 0.12]])
    positive_vectors = pool_vectors[[0, 1, 2]]
    positives_of = {"a": {"pa", "pa2"}, "b": {"pb"}}
    for margin, strategy in [(0.0, "absolute"), (0.05, "absolute"), (0.1, "relative")]:
        mined, positive_scores, _ = mine_negatives(
            anchors, anchor_vectors, positive_vectors, positives_of, pool, pool_vectors,
            num_negatives=3, margin=margin, strategy=strategy,
        )  # fmt: skip
        for i, row in enumerate(mined):
            limit = positive_scores[i] - (margin if strategy == "absolute" else abs(positive_scores[i]) * margin)
            assert not {text for text, _ in row} & (positives_of[anchors[i]] | {anchors[i]})
            assert all(score <= limit + 1e-7 for _, score in row)
            assert [s for _, s in row] == sorted((s for _, s in row), reverse=True) and len(row) <= 3
    # "close" scores above the positive of "a": a false negative by any margin, skipped; "other" is the hardest left
    common = (anchors, anchor_vectors, positive_vectors, positives_of, pool, pool_vectors)
    mined, _, skipped = mine_negatives(*common, num_negatives=1, margin=0.0)
    assert mined[0][0][0] == "other" and skipped >= 2
    mined, _, _ = mine_negatives(*common, num_negatives=3, margin=-1.0)
    assert mined[0][0][0] == "close"  # a negative margin lets it in: the filter is what skipped it


def test_relative_margin_stays_below_a_negative_positive_score():
    # sentence-transformers' rule: cos(a, p) - |cos(a, p)| * margin; `cos * (1 - margin)` gave -0.45 here, above -0.5
    assert thresholds(np.array([0.5, -0.5]), 0.1, "relative") == pytest.approx([0.45, -0.55])


def test_mine_writes_negatives_that_train(tmp_path):
    source = tmp_path / "pairs.csv"
    write_pairs(source)
    overrides = ["model=tiny", f"input={source}", "num_negatives=2", "margin=0.0", "show_progress=false"]
    cfg = compose_config("mine", overrides, tmp_path / "run")
    summary = mine(cfg)
    output = tmp_path / "pairs.mined.csv"
    assert summary["output"] == str(output) and summary["anchors"] == 8
    frame = pd.read_csv(output)
    assert {"text_neg_1", "text_neg_2", "score_pos", "score_neg_1"} <= set(frame.columns)
    for _, row in frame.iterrows():
        for k in (1, 2):
            if isinstance(row[f"text_neg_{k}"], str):
                assert row[f"text_neg_{k}"] != row["text_pos"]
                assert row[f"score_neg_{k}"] <= row["score_pos"] + 1e-6
    pairs = PairFile(str(output)).load()
    assert sum(len(p[2]) for p in pairs) == summary["negatives"] > 0
    with pytest.raises(ConfigError, match="overwrite=true"):
        mine(cfg)
    with pytest.raises(ConfigError, match="output='x.txt'"):
        mine(compose_config("mine", [*overrides, "output=x.txt"], tmp_path / "run"))
    train_cfg = compose_config(
        "train",
        TINY_OVERRIDES + ["data=pairs_file", f"data.source.path={output}", "data.batch_size=4", "trainer.max_epochs=1"],
        tmp_path / "train",
    )
    from omegaconf import open_dict

    from embedexp.cli.train import train

    with open_dict(train_cfg):
        del train_cfg.callbacks["clustering_eval"]
    assert np.isfinite(train(train_cfg)["train/loss"])


def test_mine_names_a_missing_column(tmp_path):
    source = tmp_path / "pairs.csv"
    pd.DataFrame({"text": ANCHORS, "positive": POSITIVES}).to_csv(source, index=False)
    with pytest.raises(DataError, match=r"pairs.csv: missing column\(s\) \['text_pos'\]"):
        mine(compose_config("mine", ["model=tiny", f"input={source}"], tmp_path / "run"))
