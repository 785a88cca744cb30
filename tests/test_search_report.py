"""The recipe search's result file: one row per run of every step (losing and failed ones too), with its data,
pairs, contamination record, minutes, scores, the 20NG/SO/Bio mean and the Debian tasks beside it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from embedexp.analysis.report.search import IN_DOMAIN, TRANSFER, search_table, write_search_result
from embedexp.core.results import read_result_table

from .test_report import write_job

TASKS = [*TRANSFER, *IN_DOMAIN]


def scores(transfer: float, debian: float) -> dict[str, float]:
    values = dict.fromkeys(TRANSFER, transfer) | dict.fromkeys(IN_DOMAIN, debian)
    return values | {"clustering_mean": sum(values.values()) / len(values)}


def search_step(root, name: str, jobs: list[tuple[list[str], dict | None, int]]):
    """A step's multirun folder: jobs (overrides, scores or None for a failed one, seed) with configs and checks."""
    folder = root / name
    for num, (overrides, values, seed) in enumerate(jobs):
        status = {"status": "failed", "reason": "DataError: no groff"} if values is None else None
        job = write_job(folder, num, overrides, values, scores(0.25, 0.3) if values else None, seed, status=status)
        config = {
            "data": {"_target_": "x", "total_pairs": 3000, "batching": "mixed", "sources": {"only": {"weight": 1}}}
        }
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        if values is not None:
            metrics = json.loads((job / "metrics.json").read_text()) | {"time/total_s": 600.0 + 60 * num}
            metrics["throughput/cached_share"] = 0.25
            (job / "metrics.json").write_text(json.dumps(metrics))
            check = {"pairs": 3000, "texts": 6000, "contaminated_texts": 0, "unchecked": {}}
            check["sources"] = {"data.sources.only": 3000}
            check["dropped_by_sources"] = {"data.sources.only": {"DebianShortDescSectionClustering exact": 12}}
            (job / "contamination.json").write_text(json.dumps(check))
    return folder


@pytest.fixture
def steps(tmp_path):
    data = search_step(
        tmp_path,
        "data",
        [
            (
                ["experiment=recipe_search_data", "data/source@data.sources.only=debtags", "seed=1"],
                scores(0.45, 0.30),
                1,
            ),
            (
                ["experiment=recipe_search_data", "data/source@data.sources.only=docstring_packages", "seed=1"],
                scores(0.40, 0.25),
                1,
            ),
            (["experiment=recipe_search_data", "data/source@data.sources.only=man_sections", "seed=1"], None, 1),
        ],
    )
    loss = search_step(
        tmp_path,
        "loss",
        [
            (["experiment=recipe_search_loss", "loss.temperature=0.02", "seed=1"], scores(0.44, 0.40), 1),
            (["experiment=recipe_search_loss", "loss.temperature=0.02", "seed=2"], scores(0.46, 0.41), 2),
        ],
    )
    minilm = tmp_path / "minilm"
    minilm.mkdir()
    pd.DataFrame([{"model": "all-MiniLM-L6-v2", **scores(0.52, 0.47)}]).to_csv(minilm / "eval_results.csv", index=False)
    return data, loss, minilm


def test_every_run_is_one_row_with_its_record_best_transfer_first(steps):
    columns, rows, _ = search_table(steps[:2], [steps[2]])
    table = pd.DataFrame(rows, columns=columns)
    steps = ["recipe_search_data"] * 3 + ["recipe_search_loss"] * 2 + ["baseline"]
    assert list(table["step"]) == steps  # seeds and losers kept apart, best transfer mean first within a step
    first = table.iloc[0]
    assert first["config"] == "data/source@data.sources.only=debtags"
    assert first["transfer mean"] == pytest.approx(0.45) and first["Debian mean"] == pytest.approx(0.30)
    assert first["zero-shot transfer mean"] == pytest.approx(0.25) and first["minutes"] == "10.0"
    assert first["pairs"] == "3000" and first["contamination"] == (
        "0 of 6000 texts repeat evaluation texts; the sources dropped 12 pairs repeating them"
    )
    assert first["data"] == "mixture 3000 (mixed): only 1"
    failed = table.iloc[2]
    assert failed["status"] == "failed: DataError: no groff" and pd.isna(failed["transfer mean"])
    assert list(table.loc[table["step"] == "recipe_search_loss", "seed"]) == [2, 1]  # each seed its own row, best first
    assert table.iloc[-1]["config"] == "all-MiniLM-L6-v2" and table.iloc[-1]["transfer mean"] == pytest.approx(0.52)
    assert columns[9 : 9 + len(TASKS)] == TASKS and first["store share"] == 0.25


def test_the_result_file_renders_and_names_its_command(steps, tmp_path):
    path = write_search_result(tmp_path / "recipe_search.json", steps[:2], [steps[2]], "python -m embedexp x", "t")
    table = read_result_table(path)
    assert len(table.rows) == 6 and "transfer mean" in table.columns and table.command == "python -m embedexp x"
    assert "| recipe_search_data | data/source@data.sources.only=debtags | 1 | finished |" in table.to_markdown()


def test_a_later_report_keeps_the_earlier_rows_it_does_not_measure_again(steps, tmp_path):
    path = tmp_path / "recipe_search.json"
    write_search_result(path, [steps[0]], [], "python -m embedexp x", "t")
    data_rows = read_result_table(path).rows
    write_search_result(path, [steps[1]], [steps[2]], "python -m embedexp y", "t")  # the data step's folder is gone
    table = pd.DataFrame(read_result_table(path).rows, columns=read_result_table(path).columns)
    assert list(table["step"]) == ["recipe_search_data"] * 3 + ["recipe_search_loss"] * 2 + ["baseline"]
    assert table.iloc[0]["transfer mean"] == pytest.approx(0.45) and len(data_rows) == 3
    assert read_result_table(path).source["runs"] == 4  # the earlier call's 2 measured runs and this call's 2
    write_search_result(path, [steps[1]], [], "python -m embedexp y", "t")  # measured again: replaced, not repeated
    assert len(read_result_table(path).rows) == 6
    write_search_result(path, [steps[1]], [], "python -m embedexp y", "t", keep_previous=False)
    assert len(read_result_table(path).rows) == 2


def test_a_base_run_names_its_pooling_and_prompt_so_a_changed_recipe_is_a_row_of_its_own(steps, tmp_path):
    """The recipe (every step's base) changed during the search: its runs before and after must not share a row key."""
    base = search_step(tmp_path, "recipe", [(["experiment=recipe_cpu", "seed=1"], scores(0.47, 0.40), 1)])
    hydra = {"hydra": {"runtime": {"choices": {"pooling": "final_token_attention", "prompt": "cluster", "lora": None}}}}
    (base / "0" / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    columns, rows, _ = search_table([base])
    assert rows[0][columns.index("config")] == "(the step's base: pooling=final_token_attention prompt=cluster)"
    (base / "0" / ".hydra" / "hydra.yaml").unlink()  # a job without hydra's record: no choices to name
    assert search_table([base])[1][0][columns.index("config")] == "(the step's base)"
