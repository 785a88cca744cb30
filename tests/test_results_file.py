"""Result files: written with their source, read back, rendered as Markdown; bad files are named errors."""

from __future__ import annotations

import json

import pytest

from embedexp.core.errors import DataError
from embedexp.core.results import read_result_table, write_result_table


def test_result_file_round_trip_names_its_source(tmp_path):
    path = write_result_table(
        tmp_path / "r.json", "speed", ["what", "s/step"], [["before", 3.2], ["after", 1.25]], "make bench"
    )
    table = read_result_table(path)
    assert table.rows == [["before", 3.2], ["after", 1.25]]
    assert table.source["machine"]["cpu_capability"]
    expected = ["| what | s/step |", "|---|---|", "| before | 3.20 |", "| after | 1.25 |"]
    assert table.to_markdown(2).splitlines() == expected
    assert "`make bench`" in table.provenance_line()


def test_ragged_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        write_result_table(tmp_path / "r.json", "t", ["a", "b"], [[1, 2], [3]], "cmd")
    assert not (tmp_path / "r.json").exists()
    (tmp_path / "bad.json").write_text(json.dumps({"title": "t", "columns": ["a"], "rows": [[1, 2]], "command": "c"}))
    with pytest.raises(DataError, match="bad.json: row 0"):
        read_result_table(tmp_path / "bad.json")
