"""``defect-nas train``: one architecture trained end to end into a complete run folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datagen import learnable_dataset, make_neu
from PIL import Image

from defect_nas.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parts_folder(tmp_path_factory) -> Path:
    """An ImageFolder of generated 48x48 stripe textures, 3 classes x 30."""
    ds = learnable_dataset(classes=3, per_class=30, size=48)
    root = tmp_path_factory.mktemp("parts")
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        folder = root / ds.class_names[int(label)]
        folder.mkdir(exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    return root


@pytest.fixture
def arch(tmp_path, capsys) -> Path:
    path = tmp_path / "arch.json"
    assert main(["sample", "--space", "residual", "--seed", "1", "--budget-flops", "2e6", "--input-size", "48",
                 "--classes", "3", "--out", str(path), "--json"]) == 0
    capsys.readouterr()
    return path


def test_train_writes_a_complete_run_folder(parts_folder, arch, tmp_path, capsys):
    code = main(["train", "--arch", str(arch), "--dataset", str(parts_folder), "--teacher", "none", "--epochs", "3",
                 "--results", str(tmp_path / "results"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("test_accuracy", "val_accuracy", "macs", "params", "netscore", "latency_ms", "run_dir"):
        assert key in out
    assert 0 <= out["test_accuracy"] <= 100 and out["latency_ms"] > 0 and out["macs"] > 0
    run = Path(out["run_dir"])
    for name in ("config.json", "environment.json", "split.json", "metrics.json", "arch.json", "history.csv",
                 "weights.safetensors"):
        assert (run / name).is_file(), name
    split = json.loads((run / "split.json").read_text())
    assert split["fingerprint"] and not any(p.startswith("/") for part in ("train", "val", "test") for p in split[part])
    env = json.loads((run / "environment.json").read_text())
    assert env["seed"] == 0 and env["versions"]["torch"]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3


def test_train_same_seed_same_result(parts_folder, arch, tmp_path, capsys):
    results = []
    for _ in range(2):
        main(["train", "--arch", str(arch), "--dataset", str(parts_folder), "--teacher", "none", "--epochs", "2",
              "--precision", "fp32", "--no-latency", "--results", str(tmp_path), "--json"])
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["val_accuracy"] == results[1]["val_accuracy"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "/nonexistent/parts"], "/nonexistent/parts"),
        (["--arch", "prototype:lw/lw@9"], "lw has prototypes"),
        (["--epochs", "0"], "--epochs: '0' must be a whole number of at least 1"),
    ],
)
def test_train_bad_input_is_one_line(parts_folder, tmp_path, extra, message):
    argv = ["train", "--arch", "prototype:lw/lw@0.35", "--dataset", str(parts_folder), "--teacher", "none",
            "--results", str(tmp_path), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "defect_nas", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_datasets_lists_what_is_under_the_data_root(tmp_path, capsys, monkeypatch):
    make_neu(tmp_path / "neu-cls", n=3)
    monkeypatch.setenv("DEFECT_NAS_DATA", str(tmp_path))
    assert main(["datasets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["neu"] and rows[0]["images"] == 18


def test_dagm_is_scored_per_image_by_the_9_patch_vote(tmp_path, capsys):
    from datagen import make_dagm

    make_dagm(tmp_path / "dagm", textures=2, train=(3, 3), test=(2, 2), size=256)
    arch = tmp_path / "arch.json"
    main(["sample", "--space", "residual", "--seed", "0", "--budget-flops", "3e6", "--input-size", "224",
          "--classes", "4", "--out", str(arch), "--json"])
    capsys.readouterr()
    code = main(["train", "--arch", str(arch), "--dataset", str(tmp_path / "dagm"), "--teacher", "none",
                 "--epochs", "1", "--no-latency", "--results", str(tmp_path / "r"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    image = out["test_image_metrics"]
    assert image["num_samples"] == 2 * 4  # one verdict per test image, not per patch
    assert image["tpr"] is not None and image["tnr"] is not None  # clean classes are the negatives
    assert out["test_accuracy"] == image["accuracy"] and "test_patch_accuracy" in out
