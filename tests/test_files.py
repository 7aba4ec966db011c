"""core.files: results are written whole or not at all, and a benchmark's finished runs survive."""

from __future__ import annotations

import pytest

from defect_nas.core.files import append_csv_row, atomic_path, read_csv_rows, write_json


def test_appended_rows_read_back_with_one_header(tmp_path):
    path = tmp_path / "runs.csv"
    assert read_csv_rows(path) == []  # no file yet: nothing done
    append_csv_row(path, {"spec": "r0", "acc": 99.5}, ["spec", "acc"])
    append_csv_row(path, {"spec": "r1", "acc": 98.0}, ["spec", "acc"])
    assert read_csv_rows(path) == [{"spec": "r0", "acc": "99.5"}, {"spec": "r1", "acc": "98.0"}]
    assert path.read_text().count("spec,acc") == 1


def test_a_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"winner": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"winner": ')  # half written, then the process fails
        raise RuntimeError("interrupted")
    assert '"winner": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind
