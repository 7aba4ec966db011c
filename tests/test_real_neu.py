"""Slow end-to-end checks on real NEU images (a few hundred), run in CI; skip with -m 'not slow'."""

import json
import os
import shutil
from pathlib import Path

import pytest

from defect_nas.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neu_subset(tmp_path_factory) -> Path:
    """100 real images per NEU class copied into an ImageFolder (nothing is written into the repo)."""
    root = os.environ.get("DEFECT_NAS_DATA")
    src = Path(root) / "neu-cls" if root else None
    if src is None or not src.is_dir():
        pytest.skip("real NEU not found: set DEFECT_NAS_DATA to the folder holding neu-cls/")
    dst = tmp_path_factory.mktemp("neu") / "neu100"
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:100]:
            shutil.copy(f, dst / cls.name / f.name)
    return dst


def test_residual_prototype_learns_real_steel_defects(neu_subset, tmp_path, capsys):
    code = main(["train", "--arch", "prototype:residual/resnet-proto", "--dataset", str(neu_subset), "--teacher",
                 "none", "--epochs", "15", "--input-size", "64", "--results", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["test_accuracy"] > 60  # six classes: chance is 16.7%
    assert out["macs"] > 0 and out["latency_ms"] > 0


def test_search_on_real_images_exports_a_working_winner(neu_subset, tmp_path, capsys):
    code = main(["search", "--dataset", str(neu_subset), "--budget-flops", "100e6", "--trials", "4", "--epochs", "3",
                 "--min-epochs", "1", "--proxy-input-size", "48", "--final-epochs", "3", "--final-seeds", "2",
                 "--final-input-size", "64", "--top-k", "1", "--teacher", "none", "--baselines", "none",
                 "--min-accuracy", "0", "--workers", "2", "--results", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["winner"]["seeds"] == 2
    image = next((neu_subset / "scratches").iterdir())
    assert main(["predict", str(Path(summary["run_dir"]) / "winner"), str(image), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)[0]
    assert pred["label"] in {p.name for p in neu_subset.iterdir()}


def test_the_reference_winner_quantized_to_int8_keeps_its_test_accuracy(neu_subset, tmp_path, capsys):
    """The committed reference run's winner through `export --format onnx-int8`: calibrated on its
    training images, scored on its recorded test split (360 NEU images) within 0.3 points of fp32."""
    run = Path(__file__).resolve().parents[1] / "results" / "neu-100m"
    assert main(["export", str(run), "--format", "onnx-int8", "--out", str(tmp_path / "int8")]) == 0
    check = json.loads((tmp_path / "int8" / "int8_check.json").read_text())
    assert check["test_images"] == 360 and check["fp32_accuracy"] >= 99.5
    assert check["int8_minus_fp32_points"] >= -0.3


def test_neu_loads_to_the_very_pixels_and_split_of_the_reference_run():
    """Line data changed how images of other sizes are squared; NEU (all 200 x 200) must load to the
    pixels and split the 60-minute reference run recorded (its fingerprint hashes every image)."""
    root = os.environ.get("DEFECT_NAS_DATA")
    if not root or not (Path(root) / "neu-cls").is_dir():
        pytest.skip("real NEU not found: set DEFECT_NAS_DATA to the folder holding neu-cls/")
    from defect_nas.data import load_dataset, make_split

    recorded = json.loads((Path(__file__).resolve().parents[1] / "results" / "neu-100m" / "split.json").read_text())
    ds = load_dataset("neu", data_root=root)
    assert ds.image_size == (200, 200) and ds.info["resized"] == 0
    assert ds.fingerprint == recorded["fingerprint"]
    split = make_split(ds, seed=recorded["seed"])
    assert [ds.paths[i] for i in split.test] == recorded["test"]
    assert [ds.paths[i] for i in split.train] == recorded["train"]
    from defect_nas.core.search_config import SearchConfig
    from defect_nas.nas.recipe import Recipe

    recipe = Recipe.for_data(SearchConfig(dataset="neu"), ds)  # and trains as before: no line-data recipe
    assert (recipe.imbalance, recipe.head_pool) == ("none", "gap")
