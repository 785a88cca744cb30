"""Callback fidelity: Spearman with bootstrap intervals, the n_docs curve, its files, and scoring at several sizes."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import pyplot as plt

from embedexp.analysis.report.fidelity import build_fidelity
from embedexp.analysis.report.fidelity_stats import bootstrap_spearman, fidelity_table, smallest_faithful_size, spearman

from .conftest import compose_config

TASKS = ["TaskA", "TaskB"]


def test_spearman_of_monotone_reversed_and_constant_scores():
    x = [0.1, 0.2, 0.35, 0.4, 0.9]
    assert spearman(x, [v**3 + 1 for v in x]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, [0.5] * 5))
    rho, low, high = bootstrap_spearman(x, [v * 2 for v in x])
    assert (rho, low, high) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
    rho, low, high = bootstrap_spearman(x, list(reversed(x)))
    assert rho == pytest.approx(-1.0) and high == pytest.approx(-1.0)


def test_bootstrap_interval_is_scipys_percentile_interval_and_narrows_with_more_runs():
    from scipy import stats

    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 200):
        x = rng.normal(size=n)
        y = x + rng.normal(scale=0.8, size=n)
        rho, low, high = bootstrap_spearman(x, y, n_resamples=500, seed=3)
        assert -1 <= low <= high <= 1 and 0.3 < rho < 0.95
        widths.append(high - low)
    assert widths[1] < widths[0]
    statistic = lambda a, b: stats.spearmanr(a, b).statistic  # noqa: E731
    reference = stats.bootstrap(
        (x, y),
        statistic,
        n_resamples=500,
        paired=True,
        vectorized=False,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert (low, high) == (pytest.approx(reference.low), pytest.approx(reference.high))  # not widened to contain rho
    assert math.isnan(bootstrap_spearman([1, 2], [1, 2])[1])  # two runs: no interval


def fabricated_scores() -> pd.DataFrame:
    """Eight runs: n_docs=3000 is the truth, 300 ranks like it, 100 is shuffled, the callback reverses TaskB."""
    rows, truth = [], np.linspace(0.40, 0.60, 8)
    shuffled = truth[[3, 0, 6, 1, 7, 2, 5, 4]]
    for run, value in enumerate(truth):
        per_size = {"3000": (value, value, 30.0), "300": (value - 0.01, value + 0.02, 4.0)}
        per_size["100"] = (shuffled[run], shuffled[run], 1.0)
        per_size["callback"] = (value, 1 - value, None)
        for n_docs, (a, b, seconds) in per_size.items():
            rows += [dict(run=f"job{run}", n_docs=n_docs, metric="TaskA", value=a, seconds=None)]
            rows += [dict(run=f"job{run}", n_docs=n_docs, metric="TaskB", value=b, seconds=None)]
            mean = dict(run=f"job{run}", n_docs=n_docs, metric="clustering_mean", value=(a + b) / 2, seconds=seconds)
            rows.append(mean)
    return pd.DataFrame(rows)


def test_fidelity_table_per_size_and_task_and_the_recommended_size():
    scores = fabricated_scores()
    prefix = dict(n_docs="callback", metric="clustering_mean@64", value=0.3, seconds=None)  # only the callback has it
    scores = pd.concat([scores, pd.DataFrame([{**prefix, "run": f"job{i}"} for i in range(8)])], ignore_index=True)
    table = fidelity_table(scores, "3000", n_resamples=300)
    by = table.set_index(["metric", "n_docs"])
    assert "clustering_mean@64" not in set(table["metric"])  # nothing to compare it with: no row
    assert by.loc[("TaskA", "300"), "spearman"] == pytest.approx(1.0)
    assert by.loc[("TaskB", "callback"), "spearman"] == pytest.approx(-1.0)
    assert by.loc[("clustering_mean", "100"), "spearman"] < 0.9
    assert by.loc[("clustering_mean", "300"), "seconds"] == 4.0 and by.loc[("clustering_mean", "300"), "n_runs"] == 8
    assert ("TaskA", "3000") not in by.index  # the reference is not compared with itself
    assert list(table[table["metric"] == "TaskA"]["n_docs"]) == ["100", "300", "callback"]
    assert smallest_faithful_size(table) == 300
    assert smallest_faithful_size(table, max_seconds=2.0) is None


def write_jobs(root, scores: pd.DataFrame) -> None:
    """Job folders like a multirun's: overrides, metrics.json (callback), cached size scores, an eval_results.csv."""
    for index, (_, group) in enumerate(scores.groupby("run")):
        job = root / str(index)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizer.lr={index}e-4", "seed=1"]))
        callback = group[group["n_docs"] == "callback"]
        metrics = {f"val/{m}": v for m, v in zip(callback["metric"], callback["value"])}
        (job / "metrics.json").write_text(json.dumps({**metrics, "val/loss": 1.0, "provenance": {"seed": 1}}))
        sized = group[group["n_docs"] != "callback"].drop(columns="run")
        sized.assign(n_docs=sized["n_docs"].astype(int)).to_csv(job / "fidelity_scores.csv", index=False)
        full = group[group["n_docs"] == "3000"]
        (job / "full_eval").mkdir()
        row = {"model": f"{job}/adapter", "pooling": "MeanPooling", "prompt": "eol"}
        row.update(zip(full.metric, full.value))
        pd.DataFrame([row]).to_csv(job / "full_eval" / "eval_results.csv", index=False)


def test_build_fidelity_writes_csv_markdown_and_plot(tmp_path):
    write_jobs(tmp_path / "sweep", fabricated_scores())
    overrides = [f"sweep_dir={tmp_path / 'sweep'}", "score=false", "sizes=[100,300,3000]", "n_bootstrap=200"]
    cfg = compose_config("fidelity", overrides, tmp_path)
    built = build_fidelity([tmp_path / "sweep"], cfg)
    paths = built.paths
    assert built.reference == "3000"
    table = pd.read_csv(paths["csv"], dtype={"n_docs": str})
    mean = table[table["metric"] == "clustering_mean"].set_index("n_docs")
    assert mean.loc["300", "spearman"] == pytest.approx(1.0) and mean.loc["eval", "spearman"] == pytest.approx(1.0)
    assert set(table["metric"]) == {"TaskA", "TaskB", "clustering_mean"}
    assert len(pd.read_csv(paths["scores"])["run"].unique()) == 8
    assert "Smallest n_docs with clustering_mean rho >= 0.9: 300" in paths["md"].read_text()
    image = plt.imread(paths["png"])[..., :3]  # the rho curves are the only coloured pixels of the left panel
    left = image[:, : image.shape[1] // 2]
    assert ((left.max(axis=-1) - left.min(axis=-1)) > 0.3).sum() > 100
    for job in (tmp_path / "sweep").glob("[0-9]*"):  # the jobs' own callback precision is what they were scored in
        (job / ".hydra" / "config.yaml").write_text("callbacks:\n  clustering_eval:\n    precision: 32\n")
    assert build_fidelity([tmp_path / "sweep"], cfg).precision == "32"
    cfg.precision = "bf16"
    assert build_fidelity([tmp_path / "sweep"], cfg).precision == "bf16"
    cfg.reference, cfg.out_dir = "eval", str(tmp_path / "against_eval")
    against_eval = pd.read_csv(build_fidelity([tmp_path / "sweep"], cfg).paths["csv"], dtype={"n_docs": str})
    assert "3000" in set(against_eval["n_docs"]) and "eval" not in set(against_eval["n_docs"])


def test_scores_at_sizes_equal_scoring_each_size_on_its_own(tiny_backbone, tmp_path):
    from hydra.utils import instantiate

    from embedexp.evaluation.clustering import evaluate_clustering
    from embedexp.evaluation.sizes import score_at_sizes
    from embedexp.model.embedder import Embedder
    from embedexp.model.pooling import MeanPooling
    from embedexp.model.prompts import PromptTemplate

    cfg = compose_config("eval", ["tasks=tiny"], tmp_path)
    node = cfg.tasks.twenty_newsgroups
    prompt = PromptTemplate("none", "{text}")
    embedder = Embedder(tiny_backbone.model, tiny_backbone.tokenizer, MeanPooling(), prompt, max_length=32)
    sized = score_at_sizes(embedder, [instantiate(node, n_docs=60)], [30, 60], batch_size=16, precision="32")
    for n_docs in (30, 60):
        alone = evaluate_clustering(embedder, [instantiate(node, n_docs=n_docs)], precision="32")
        rows = sized[sized["n_docs"] == n_docs].set_index("metric")
        assert rows.loc["TwentyNewsgroupsSubjectsClustering", "value"] == pytest.approx(
            alone["TwentyNewsgroupsSubjectsClustering"], abs=1e-9
        )
        assert rows.loc["clustering_mean", "seconds"] > 0
