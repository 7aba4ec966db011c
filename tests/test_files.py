"""core.files: results are written whole or not at all, and a benchmark's finished runs survive."""

from __future__ import annotations

import os
import signal

import pytest

from defect_nas.core.files import append_csv_row, atomic_folder, atomic_path, read_csv_rows, write_json
from defect_nas.core.interrupts import Terminated, deferred_stop


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


def test_an_export_that_fails_midway_keeps_the_previous_model_folder_whole(tmp_path):
    winner = tmp_path / "winner"
    with atomic_folder(winner) as tmp:
        (tmp / "weights.safetensors").write_text("model A")
        (tmp / "model.onnx").write_text("model A")
    with pytest.raises(KeyboardInterrupt), atomic_folder(winner) as tmp:
        (tmp / "weights.safetensors").write_text("model B")  # then Ctrl-C before its ONNX file
        raise KeyboardInterrupt
    assert {p.name: p.read_text() for p in winner.iterdir()} == {"weights.safetensors": "model A",
                                                                 "model.onnx": "model A"}
    with atomic_folder(winner) as tmp:  # a whole new export replaces the old one entirely
        (tmp / "weights.safetensors").write_text("model C")
    assert [p.name for p in winner.iterdir()] == ["weights.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["winner"]  # no temporary or old folder left behind


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_ctrl_c_during_an_export_lets_it_finish_and_a_second_one_stops_at_once(signum, raised):
    """Ctrl-C, and SIGTERM as docker stop sends it (which used to kill the export half-way)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    told = []
    with deferred_stop(lambda: told.append("finishing the export")) as stopped:
        os.kill(os.getpid(), signum)
        finished = True  # the step went on
    assert finished and stopped == [signum] and told == ["finishing the export"]
    with pytest.raises(raised), deferred_stop(lambda: None):
        os.kill(os.getpid(), signum)
        os.kill(os.getpid(), signum)
    assert {s: signal.getsignal(s) for s in before} == before  # the usual handlers are back
