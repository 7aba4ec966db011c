"""On the line: the OK/NG operating point (chosen on validation for an escape rate, measured on test
with intervals), ``predict`` on files and folders with its decision, and the stand-alone predictor
that runs where the search, the trainer and torch cannot even be imported."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import TINY_SPEC as SPEC
from datagen import learnable_dataset, trained_tiny_model
from PIL import Image

from defect_nas.cli.main import main
from defect_nas.data.preprocess import model_input, recorded_part
from defect_nas.deploy.decision import load_operating_point
from defect_nas.deploy.model import save_model
from defect_nas.deploy.operating_point import choose, measure, wilson

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("good", "dent", "scratch")


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """A trained 3-class model whose first class is the defect-free one, exported with its operating point."""
    ds = learnable_dataset(classes=3, per_class=40, size=32)
    ds = dataclasses.replace(ds, class_names=LABELS, negative_classes=(0,))
    folder = tmp_path_factory.mktemp("run") / "winner"
    split, model = trained_tiny_model(ds, folder)
    (folder / "MODEL_CARD.md").write_text("# winner\n\n## Metrics\n\n- accuracy\n\n## Cost\n\n- MACs\n")
    val, test = (recorded_part(ds, split, 32, LABELS, p) for p in ("val", "test"))
    op = measure(folder, val, test)
    images = tmp_path_factory.mktemp("images")
    for i in split.test.tolist()[:6]:
        Image.fromarray(ds.images[i, 0].numpy()).save(images / f"{LABELS[int(ds.labels[i])]}-{i}.png")
    return model, folder, op, val, test, images


def probs_of(model, rec) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(model_input(rec.x8)), 1).double().numpy()


def test_the_threshold_catches_every_validation_defect_and_test_rates_are_counted_with_intervals(line):
    model, folder, op, val, test, _ = line
    assert op.mode == "good-vs-defect" and op.good == ("good",)
    t = op.thresholds["good"]
    p_val, y_val = probs_of(model, val), val.truth.numpy()
    assert (p_val[y_val != 0, 0] < t).all()  # every validation defect is NG (the default escape rate is 0)
    assert op.report["validation"]["good"]["escapes"] == 0
    p_test, y_test = probs_of(model, test), test.truth.numpy()
    r = op.report["test"]["good"]
    escapes, rejects = int((p_test[y_test != 0, 0] > t).sum()), int((p_test[y_test == 0, 0] <= t).sum())
    assert (r["escapes"], r["false_rejects"]) == (escapes, rejects)
    assert (r["defects"], r["passes"]) == (int((y_test != 0).sum()), int((y_test == 0).sum()))
    # a 95% Wilson interval: for k of n, centre (k + z^2/2) / (n + z^2), half-width z sqrt(...)/(n + z^2)
    n, z = r["defects"], 1.959964
    centre = (escapes + z * z / 2) / (n + z * z)
    half = z * math.sqrt(escapes * (n - escapes) / n + z * z / 4) / (n + z * z)
    assert r["escape_ci"] == pytest.approx([100 * max(0, centre - half), 100 * (centre + half)], abs=1e-3)
    assert load_operating_point(folder, LABELS).thresholds == op.thresholds  # stored with the model
    card = (folder / "MODEL_CARD.md").read_text()
    assert "## Operating point" in card and f"{r['threshold']:.4g}" in card and card.index("## Operating") < card.index(
        "## Cost")


def test_a_higher_escape_rate_moves_the_threshold_down_and_never_rejects_more_good_parts():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(50, int), np.ones(30, int), np.full(20, 2)]
    p_good = np.where(y == 0, rng.uniform(0.3, 1.0, 100), rng.uniform(0.0, 0.7, 100))
    rest = 1 - p_good
    prob = np.c_[p_good, rest / 2, rest / 2]
    strict = choose(LABELS, ["good"], prob, y, 0.0)
    loose = choose(LABELS, ["good"], prob, y, 0.2)
    assert strict.report["validation"]["good"]["escapes"] == 0
    assert loose.report["validation"]["good"]["escapes"] <= 0.2 * 50
    assert loose.thresholds["good"] < strict.thresholds["good"]
    assert loose.report["validation"]["good"]["false_rejects"] <= strict.report["validation"]["good"]["false_rejects"]
    # predict --max-escape-rate re-chooses from the stored validation scores: the same threshold
    assert strict.with_escape_rate(0.2).thresholds == loose.thresholds


def test_without_a_good_class_each_class_is_judged_one_vs_rest():
    y = np.array([0, 0, 1, 1, 2, 2])
    prob = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8],
                     [0.3, 0.1, 0.6]])
    op = choose(("a", "b", "c"), [], prob, y)
    assert op.mode == "one-vs-rest" and set(op.thresholds) == {"a", "b", "c"}
    assert 0.3 < op.thresholds["a"] <= 0.6  # below every "a" part's P(a), above the others'
    assert op.decide(prob) == ["NG"] * 6 and op.decide(np.array([[0.34, 0.33, 0.33]])) == ["OK"]
    assert all(r["escapes"] == 0 and r["false_rejects"] == 0 for r in op.report["validation"].values())
    assert wilson(0, 0) is None


def images_probs(model, files: list[str]) -> np.ndarray:
    x = torch.stack([torch.from_numpy(np.array(Image.open(f)))[None] for f in files])
    with torch.no_grad():
        return torch.softmax(model(model_input(x)), 1).double().numpy()


def test_predict_shows_the_decision_and_takes_an_override(line, capsys):
    model, folder, op, _, _, images = line
    files = sorted(str(p) for p in images.iterdir())
    assert main(["predict", str(folder), *files, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == files
    assert [r["decision"] for r in rows] == op.decide(images_probs(model, files))  # the stored threshold
    assert main(["predict", str(folder), *files, "--json", "--threshold", "1"]) == 0  # nothing is above 1: all NG
    assert {r["decision"] for r in json.loads(capsys.readouterr().out)} == {"NG"}


def test_predict_on_a_folder_writes_a_csv_and_skips_a_bad_image(line, tmp_path, capsys):
    _, folder, _, _, _, images = line
    tree = tmp_path / "line"
    (tree / "station2").mkdir(parents=True)
    for i, p in enumerate(sorted(images.iterdir())):
        (tree / ("station2" if i % 2 else "") / p.name).write_bytes(p.read_bytes())
    (tree / "station2" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(folder), str(tree), "--csv", str(out)]) == 0
    err = capsys.readouterr().err
    assert "torn.png: not a readable image" in err
    lines = out.read_text().splitlines()
    assert lines[0] == "path,label,probability,decision" and len(lines) == 1 + 6
    assert all(line.split(",")[3] in ("OK", "NG") for line in lines[1:])
    # nothing readable: one line, exit 2, and the CSV already there is left as it was
    assert main(["predict", str(folder), str(tree / "station2" / "torn.png"), "--csv", str(out)]) == 2
    assert "no readable image among 1 file(s)" in capsys.readouterr().err
    assert out.read_text().splitlines() == lines


@pytest.mark.parametrize("argv, message", [
    (["--threshold", "1.5"], "--threshold"),
    (["--threshold", "nan"], "--threshold"),
    (["--max-escape-rate", "-0.1"], "--max-escape-rate"),
    (["--runtime", "tensorrt"], "--runtime"),
])
def test_bad_operating_flags_are_one_line(line, argv, message, capsys):
    _, folder, _, _, _, images = line
    with pytest.raises(SystemExit) as e:
        main(["predict", str(folder), str(images), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_missing_runtime_and_a_missing_operating_point_are_one_line(line, tmp_path, capsys, monkeypatch):
    _, folder, _, _, _, images = line
    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a PC without it: importing it fails
    assert main(["predict", str(folder), str(images), "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err.strip()
    assert "defect-nas[openvino]" in err and len(err.splitlines()) == 1
    assert main(["benchmark", str(folder), "--runtimes", "tensorrt"]) == 2
    assert "--runtimes 'tensorrt'" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("arch.json", "labels.json", "model.onnx"):
        (bare / name).write_bytes((folder / name).read_bytes())
    assert main(["predict", str(bare), str(images), "--threshold", "0.5"]) == 2
    assert "no operating_point.json" in capsys.readouterr().err
    assert main(["operating-point", str(bare)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_openvino_runs_the_exported_model_as_onnx_runtime_does(line, tmp_path):
    pytest.importorskip("openvino")
    from defect_nas.deploy.predictor import Predictor

    model, _, _, val, test, _ = line
    out = tmp_path / "ov"
    calibration = model_input(val.x8).numpy()
    formats = ("onnx", "openvino") + (("openvino-int8",) if _has("nncf") else ())
    save_model(model, SPEC, LABELS, out, formats, calibration=calibration)
    x = test.x8.numpy()
    ort, ov = Predictor(out).probabilities(x), Predictor(out, runtime="openvino")
    if (out / "model.int8.xml").is_file():  # int8 when NNCF made it; it must still name most parts alike
        assert ov.ran == {"runtime": "openvino", "precision": "int8", "file": "model.int8.xml"}
        assert (ov.probabilities(x).argmax(1) == ort.argmax(1)).mean() >= 0.9
        (out / "model.int8.xml").unlink()
        ov = Predictor(out, runtime="openvino")
    assert ov.ran == {"runtime": "openvino", "precision": "fp32", "file": "model.xml"}
    assert np.allclose(ov.probabilities(x), ort, atol=1e-4)  # fp32 kept (OpenVINO's default would be fp16)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


BLOCKER = """
import sys
BLOCKED = ("torch", "torchvision", "optuna", "fvcore", "ptflops", "captum", "defect_nas.nas",
           "defect_nas.evaluators", "defect_nas.measure", "defect_nas.search_spaces", "defect_nas.inspection",
           "defect_nas.cli")
class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is blocked: the predictor must not need it")
sys.meta_path.insert(0, Block())
import json
from defect_nas.deploy.predictor import Predictor
p = Predictor(sys.argv[1])
print(json.dumps([[r.label, r.probability, r.decision] for r in p.predict(sys.argv[2:])]))
"""


def test_the_predictor_runs_where_the_search_and_torch_cannot_be_imported(line):
    model, folder, op, _, _, images = line
    files = sorted(str(p) for p in images.iterdir())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", BLOCKER, str(folder), *files], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    want = images_probs(model, files)
    assert [g[0] for g in got] == [LABELS[k] for k in want.argmax(1)]  # the training pixels, the same net
    assert [g[1] for g in got] == pytest.approx(want.max(1).tolist(), abs=1e-5)
    assert [g[2] for g in got] == op.decide(want)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """A real HTTP request (urllib): the status and the JSON body, 4xx included."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


LEAN_SERVER = (BLOCKER.split("import json")[0]
               + "import runpy\nrunpy.run_module('defect_nas.deploy', run_name='__main__')\n")


@pytest.mark.parametrize("entry", [["-m", "defect_nas", "serve"], ["-c", LEAN_SERVER]], ids=["cli", "lean"])
def test_serve_answers_as_predict_does_and_survives_a_bad_upload(line, entry, capsys):
    """``defect-nas serve``, and the lean entry a line PC without torch runs (the imports blocked)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import time

    _, folder, _, _, _, images = line
    image = sorted(images.iterdir())[0]
    assert main(["predict", str(folder), str(image), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)[0]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, *entry, str(folder), "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # the import of the runtime and the model load: seconds
            try:
                status, health = http("GET", f"{base}/health")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        assert status == 200 and health["status"] == "ok" and health["labels"] == list(LABELS)
        status, got = http("POST", f"{base}/predict", image.read_bytes(), {"Content-Type": "image/png"})
        assert status == 200
        assert (got["label"], got["decision"]) == (expected["label"], expected["decision"])
        assert got["probability"] == pytest.approx(expected["probability"], abs=1e-9)
        assert got["model_version"] == health["model_version"] and got["ms"] > 0
        boundary = "defectnas"
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{image.name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        status, multi = http("POST", f"{base}/predict", form,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 200 and multi["label"] == expected["label"]
        status, err = http("POST", f"{base}/predict", b"a text file, not a part", {"Content-Type": "text/plain"})
        assert status == 415 and "not a readable image" in err["error"] and "\n" not in err["error"]
        status, err = http("POST", f"{base}/predict", b"")
        assert status == 400 and "empty body" in err["error"]
        assert http("GET", f"{base}/health")[0] == 200 and server.poll() is None  # still serving
    finally:
        server.terminate()
        server.wait(timeout=30)
