"""Bad input: one line naming the problem and the fix, exit 2, and nothing already written changes.

The cases of the reliability probe (issue 13) that concern input; its process faults (dead
workers, Ctrl-C, concurrent claims, resume) are in test_faults.py."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from defect_nas.cli.main import main
from defect_nas.core.search_config import SearchConfig

TINY = ["--teacher", "none", "--trials", "1", "--baselines", "none"]


@pytest.mark.parametrize("argv, message", [
    (["--proxy-input-size", "16"], "--proxy-input-size: 16 must be a whole number from 32 to 512"),
    (["--final-input-size", "-3"], "--final-input-size: '-3' must be a whole number from 32 to 512"),
    (["--teacher-input-size", "4096"], "--teacher-input-size: '4096' must be a whole number from 32 to 512"),
    (["--dataset", ""], "--dataset is empty"),
    (["--min-accuracy", "100"], "--min-accuracy: '100' must be a number of at least 0 and below 100"),
    (["--explore-share", "0.9", "--promote-share", "0.2"], "sum to less than 1"),
    (["--budget-flops", "1e12"], "--budget-flops 1e+12: choose a positive budget up to 1e+10 MACs"),
    (["--budget-flops", "-5"], "--budget-flops: '-5' must be a positive number"),
    (["--tolerance", "1.5"], "--tolerance: '1.5' must be a number above 0 and below 1"),
    (["--trials", "0"], "--trials: '0' must be a whole number of at least 1"),
    (["--workers", "0"], "--workers: '0' must be a whole number of at least 1"),
    (["--teacher-freeze", "9"], "--teacher-freeze: '9' must be a whole number from 0 to 5"),
    (["--max-latency-ms", "0"], "--max-latency-ms: '0' must be a positive number"),
    # typed above --epochs: refused as SearchConfig refuses it (the CLI once clamped it silently)
    (["--epochs", "2", "--min-epochs", "5"], "--min-epochs 5 must be in 1..--epochs (2)"),
])
def test_bad_search_flags_fail_before_any_work(argv, message, tmp_path, capsys):
    assert exit_code(["search", *TINY, "--results", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()  # nothing written


def exit_code(argv: list[str]) -> int:
    """main's return value, or the status of argparse's own exit (flags it rejects while parsing)."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_another_study_cannot_overwrite_an_existing_run_whatever_the_storage(tmp_path, capsys):
    data = _image_folder(tmp_path)
    run = tmp_path / "r" / "existing"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**SearchConfig(dataset=str(data), epochs=12).to_dict(),
                                                 "storage": "sqlite:///x.db", "study": "existing"}))
    (run / "summary.json").write_text('{"winner": {"name": "kept"}}')
    before = digests(run)
    argv = ["search", *TINY, "--dataset", str(data), "--budget-flops", "2e6", "--results", str(tmp_path / "r"),
            "--run", "existing", "--epochs", "1", "--min-epochs", "1",
            "--storage", f"sqlite:///{tmp_path / 'other.db'}"]
    assert main(argv) == 2
    assert "holds a search with other settings" in capsys.readouterr().err
    assert digests(run) == before


WINNER = Path(__file__).resolve().parents[1] / "results" / "neu-100m" / "winner"


def one_line(capsys, message: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err


def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("kept")
    return f


def test_an_unreachable_storage_on_an_existing_run_rewrites_none_of_its_files(tmp_path, capsys):
    """It used to rewrite config.json and environment.json first, after which report failed."""
    data = _image_folder(tmp_path)
    run = tmp_path / "r" / "existing"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**SearchConfig(dataset=str(data), budget_flops=2e6, teacher="none",
                                                              baselines=("none",)).to_dict(),
                                                 "storage": "x", "study": "existing"}))
    (run / "environment.json").write_text("{}")
    before = digests(run)
    argv = ["search", *TINY, "--dataset", str(data), "--budget-flops", "2e6", "--results", str(tmp_path / "r"),
            "--run", "existing",
            "--storage", "postgresql://nobody@127.0.0.1:9/none"]
    assert main(argv) == 2
    one_line(capsys, "is not usable")
    assert {k: v for k, v in digests(run).items() if k != ".lock"} == before  # the run lock is an empty file


@pytest.mark.parametrize("labels, message", [
    (None, "labels.json: missing; write the 6 class names"),
    ('["a", "b"]', "labels.json: must be a JSON list of the model's 6 class names"),
])
def test_a_model_folder_without_its_class_names_is_refused(labels, message, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("arch.json", "model.onnx"):
        (model / name).write_bytes((WINNER / name).read_bytes())
    if labels is not None:
        (model / "labels.json").write_text(labels)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (200, 200), 128).save(image)
    assert main(["predict", str(model), str(image)]) == 2
    one_line(capsys, message)


def test_train_refuses_an_unwritable_results_folder_before_training(tmp_path, capsys, monkeypatch):
    import defect_nas.evaluators.run as run

    monkeypatch.setattr(run, "train_spec", lambda *a, **k: pytest.fail("trained before checking --results"))
    data = _image_folder(tmp_path)
    argv = ["train", "--arch", "prototype:lw/lw@0.35", "--dataset", str(data), "--teacher", "none",
            "--results", str(a_file(tmp_path) / "runs")]
    assert main(argv) == 2
    one_line(capsys, "--results")
    assert (tmp_path / "a-file").read_text() == "kept"


def test_benchmark_refuses_an_unwritable_out_before_measuring(tmp_path, capsys, monkeypatch):
    import defect_nas.measure.latency as latency

    monkeypatch.setattr(latency, "measure_latency", lambda *a, **k: pytest.fail("measured before checking --out"))
    assert main(["benchmark", str(WINNER), "--out", str(a_file(tmp_path) / "bench.json")]) == 2
    one_line(capsys, "cannot write there")


def test_export_to_an_unwritable_folder_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "winner").mkdir(parents=True)
    for f in WINNER.iterdir():
        if f.is_file():
            (run / "winner" / f.name).write_bytes(f.read_bytes())
    assert main(["export", str(run), "--out", str(a_file(tmp_path) / "out")]) == 2
    one_line(capsys, "--out")


def test_report_on_a_folder_that_refuses_writes_is_one_line_and_keeps_the_old_report(tmp_path, capsys, monkeypatch):
    import shutil
    import tempfile

    run = tmp_path / "neu-100m"
    committed = shutil.ignore_patterns("winner", "explain", "*.png", "study.db", "trials")  # as a clone has it
    shutil.copytree(WINNER.parent, run, ignore=committed)
    before = (run / "report.html").read_bytes()

    def refuse(*args, **kwargs):  # a read-only folder, as root cannot be refused by chmod
        raise PermissionError(13, "Permission denied", str(run))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["report", str(run)]) == 2
    one_line(capsys, "cannot write there (Permission denied)")
    assert (run / "report.html").read_bytes() == before


def test_a_disk_error_mid_write_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    """What the per-command checks cannot foresee (a disk filling up) still ends in one line."""
    import defect_nas.cli.design as design

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "spec.json"))

    monkeypatch.setattr(design, "write_text_atomic", full)
    assert main(["sample", "--space", "residual", "--out", str(tmp_path / "spec.json")]) == 2
    one_line(capsys, "No space left on device")


def test_cost_of_a_spec_too_big_to_build_counts_it_analytically(tmp_path, capsys, monkeypatch):
    """8 blocks x 4096 channels (inside the spec limits) crashed under a 4 GB memory limit."""
    import defect_nas.search_spaces.build as build

    monkeypatch.setattr(build, "build", lambda *a, **k: pytest.fail("built a 2-billion-parameter model"))
    spec = {"name": "huge", "in_channels": 1, "input_size": 200, "num_classes": 6,
            "stem": [{"type": "conv", "out": 64, "kernel": 3, "stride": 2, "act": "relu", "norm": True, "pool": 0}],
            "stages": [[{"type": "basic", "out": 4096, "kernel": 3, "stride": 1}] * 8],
            "head": {"pool": "gap", "fc": [], "dropout": 0.0}}
    (tmp_path / "huge.json").write_text(json.dumps(spec))
    assert main(["cost", str(tmp_path / "huge.json"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["params"] > 2_000_000_000 and r["macs_fvcore"] is None and r["cross_check"].startswith("skipped")


def _image_folder(tmp_path: Path) -> Path:
    from datagen import learnable_dataset
    from PIL import Image

    ds = learnable_dataset(classes=2, per_class=10, size=32)
    data = tmp_path / "data"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        (data / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(data / ds.class_names[int(label)] / f"{i}.png")
    return data


def test_a_second_search_on_a_folder_in_use_is_refused(tmp_path, capsys):
    from defect_nas.nas.storage import RunLock

    data = _image_folder(tmp_path)
    run = tmp_path / "r" / "busy"
    run.mkdir(parents=True)
    with RunLock(run):  # as a running search holds it
        argv = ["search", *TINY, "--dataset", str(data), "--budget-flops", "2e6", "--results", str(tmp_path / "r"),
                "--run", "busy"]
        assert main(argv) == 2
    one_line(capsys, "another defect-nas search is running on this folder")
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written


class _Payload:
    def __reduce__(self):  # what a malicious pickle runs when loaded
        return (Path.touch, (Path(_Payload.marker),))


def test_a_pickle_disguised_as_safetensors_is_rejected_unrun(tmp_path, capsys):
    import pickle

    model = tmp_path / "model"
    model.mkdir()
    for name in ("arch.json", "labels.json"):
        (model / name).write_bytes((WINNER / name).read_bytes())
    _Payload.marker = str(tmp_path / "pwned")
    (model / "weights.safetensors").write_bytes(pickle.dumps(_Payload()))
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (200, 200), 128).save(image)
    assert main(["explain", str(model), str(image), "--out", str(tmp_path / "maps")]) == 2  # reads the weights
    one_line(capsys, "weights.safetensors")
    assert not (tmp_path / "pwned").exists()


def test_export_given_the_winner_folder_instead_of_the_run_names_the_run_folder(capsys):
    assert main(["export", str(WINNER), "--format", "onnx-int8"]) == 2
    one_line(capsys, "is a model folder; export takes the run folder")


def test_an_unknown_export_format_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["export", str(WINNER.parent), "--format", "tflite", "--out", str(tmp_path / "x")]) == 2
    one_line(capsys, "--format 'tflite': choose from")
    assert not (tmp_path / "x").exists()


def test_search_refuses_a_run_folder_inside_its_dataset_folder(tmp_path, capsys):
    """A run written into the data would become part of it (its trials/ folder reads as a class
    without images) and every later phase would fail to load the data: refused before any work."""
    data = _image_folder(tmp_path)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    assert exit_code(["search", *TINY, "--dataset", str(data), "--results", str(data), "--run", "r"]) == 2
    one_line(capsys, "lies inside the dataset folder")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written into the data


# Issue 24: every number is validated once, before any work, with the same wording for flags and --config.

NUMBER_PROBES = ("nan", "inf", "-1", "two")  # no numeric flag of defect-nas takes -1: each is rejected
POSITIONALS = {"cost": ["spec.json"], "predict": ["model", "x.png"], "benchmark": ["model"], "export": ["run"],
               "explain": ["target"], "analyze": ["teacher"], "train": ["--arch", "x"], "serve": ["model"],
               "operating-point": ["run"],
               "netscore": ["--accuracy", "90", "--params", "1e6", "--macs", "1e8"],
               "worker": ["--study", "s", "--storage", "sqlite:///s.db"]}


def numeric_flags() -> list[tuple[str, argparse.Action]]:
    """(command, action) of every option of every command that converts its value (not text)."""
    from defect_nas.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [(command, a) for command, p in sub.choices.items() for a in p._actions
            if a.option_strings and a.type not in (None, str)]


def test_every_numeric_flag_goes_through_one_validated_type():
    """A flag added later with a bare type=int or type=float (NaN, inf, -1 pass) fails here."""
    from defect_nas.cli.search import duration

    flags = numeric_flags()
    assert len(flags) > 60  # every command's parser was walked
    unchecked = [f"{c} {a.option_strings[0]}" for c, a in flags
                 if not (hasattr(a.type, "bounds") or a.type is duration or (a.type is int and a.choices))]
    assert unchecked == []


def test_nan_inf_minus_one_and_words_are_refused_by_every_numeric_flag_of_every_command(tmp_path, monkeypatch,
                                                                                        capsys):
    """NaN reached the workers (search --ema-epochs nan, --accuracy-margin nan), -1 reached optuna
    (search --seed -1) and torch (train --lr -1), 10^8 reached a 409 GB allocation (benchmark --batch):
    tracebacks. Now each is one line naming the flag, exit 2, while parsing, so nothing is written."""
    monkeypatch.chdir(tmp_path)
    for command, action in numeric_flags():
        flag = action.option_strings[0]
        for value in NUMBER_PROBES:
            with pytest.raises(SystemExit) as stopped:  # refused while parsing, before the command starts
                main([command, *POSITIONALS.get(command, []), flag, value])
            assert stopped.value.code == 2, f"{command} {flag} {value}"
            one_line(capsys, flag)
    with pytest.raises(SystemExit):
        main(["benchmark", "model", "--batch", "100000000"])
    one_line(capsys, "--batch: '100000000' must be a whole number from 1 to 1024")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("stored, message", [
    ({"trials": "two"}, "--trials: 'two' must be a whole number of at least 1"),  # was a TypeError traceback
    ({"seed": -1}, "--seed: -1 must be a whole number from 0 to 4294967295"),
    ({"ema_epochs": float("nan")}, "--ema-epochs: nan must be a positive number"),  # JSON's NaN
    ({"accuracy_margin": float("inf")}, "--accuracy-margin: inf must be a number from 0 to 100"),
    ({"tolerance": "0.05"}, "--tolerance: '0.05' must be a number above 0 and below 1"),
    ({"spaces": 3}, "--space: 3 must be a list of names"),
])
def test_a_config_file_value_of_the_wrong_kind_or_range_is_the_flags_one_line(stored, message, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dataset": str(tmp_path / "no-data"), "trials": 2, **stored}))
    assert main(["search", "--config", str(config), "--results", str(tmp_path / "r")]) == 2
    one_line(capsys, f"--config {config}: {message}")
    assert not (tmp_path / "r").exists()


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, capsys, monkeypatch):
    """It said 'cannot access a file: No space left on device': a full disk fails the write, not the
    open, and Python then names no file."""
    run = tmp_path / "run"
    (run / "winner").mkdir(parents=True)
    for f in WINNER.iterdir():
        if f.is_file():
            (run / "winner" / f.name).write_bytes(f.read_bytes())

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 2
    one_line(capsys, f"{tmp_path / 'out' / 'arch.json'}: cannot write (No space left on device)")
