"""The segmentation search end to end on tiny generated image + mask data: it ends with an exported winner
that `predict` re-scores to the same test mIoU, `report` rebuilds byte for byte, `export` checks int8 on
mIoU; bad input is one line and exit 2 with nothing written."""

import json

import numpy as np
import pytest
from datagen import segmentation_folder
from PIL import Image

from defect_nas.cli.main import main

SEARCH = ["--budget-flops", "5e6", "--trials", "4", "--epochs", "4", "--promote-epochs", "6", "--final-epochs", "10",
          "--final-seeds", "2", "--top-k", "2", "--workers", "1"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One search on a folder of images with masks (its layout selects the task)."""
    tmp = tmp_path_factory.mktemp("segsearch")
    root = segmentation_folder(tmp / "data", {"train": 48, "val": 12, "test": 12}, size=48)
    code = main(["search", "--dataset", str(root), *SEARCH, "--results", str(tmp / "runs"), "--json"])
    return tmp, root, tmp / "runs" / "data-5m", code


def test_the_search_ends_with_an_exported_segmenter_scored_per_class_over_its_seeds(searched):
    tmp, root, run, code = searched
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    metrics = json.loads((run / "winner" / "metrics.json").read_text())
    assert summary["task"] == "segment" and json.loads((run / "config.json").read_text())["task"] == "segment"
    assert summary["trials"]["finished"] == 4 and len(summary["rung2"]) <= 2
    assert 4.75e6 <= metrics["macs"] <= 5.25e6  # inside the budget band
    assert (run / "winner" / "model.onnx").is_file() and (run / "report.html").is_file()
    assert [s["seed"] for s in metrics["seeds"]] == [0, 1]
    assert set(metrics["test_iou_over_seeds"]) == {"background", "blob", "scratch"}
    assert metrics["test_miou_over_seeds"]["mean"] > 45  # a blank mask scores ~31% here (background only)
    assert metrics["latency_onnx_b1_1thread_ms"] > 0
    trials = (run / "trials.csv").read_text().splitlines()[0]
    assert "val_miou" in trials and "val_accuracy" not in trials
    page = (run / "report.html").read_text()
    assert "IoU per class" in page and page.count("data:image/jpeg;base64") == 16  # 4 best + 4 worst, truth + pred


def test_predict_writes_masks_and_overlays_and_rescores_the_test_split_to_the_searchs_miou(searched, capsys):
    tmp, root, run, _ = searched
    out = tmp / "pred"
    capsys.readouterr()
    assert main(["predict", str(run / "winner"), str(root / "images" / "test"), "--truth",
                 str(root / "masks" / "test"), "--out", str(out), "--json"]) in (0, None)
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((run / "winner" / "metrics.json").read_text())
    assert result["images"] == 12 and abs(result["scores"]["miou"] - metrics["test_miou"]) < 0.5  # ONNX vs torch
    mask = np.asarray(Image.open(out / "masks" / "0.png"))
    assert mask.shape == (48, 48) and mask.max() < 3  # class indices, not colours
    assert Image.open(out / "overlays" / "0.png").mode == "RGB"
    assert len((out / "masks.csv").read_text().splitlines()) == 13


def test_report_rebuilds_the_same_page_and_export_keeps_int8_only_within_a_point(searched, capsys):
    tmp, root, run, _ = searched
    before = (run / "report.html").read_bytes()
    assert main(["report", str(run)]) in (0, None)
    assert (run / "report.html").read_bytes() == before
    assert main(["export", str(run), "--format", "onnx", "--format", "onnx-int8"]) in (0, None)
    check = json.loads((run / "export-winner" / "int8_check.json").read_text())
    assert check["kept"] == (check["int8_miou"] >= check["fp32_onnxruntime_miou"] - 1.0)
    assert (run / "export-winner" / "model.int8.onnx").is_file() == check["kept"]


def test_predict_with_a_missing_true_mask_or_classifier_flags_is_one_line_exit_2(searched, capsys):
    tmp, root, run, _ = searched
    truth = tmp / "truth"
    truth.mkdir()
    for f in (root / "masks" / "test").iterdir():
        if f.stem != "3":
            (truth / f.name).write_bytes(f.read_bytes())
    capsys.readouterr()
    assert main(["predict", str(run / "winner"), str(root / "images" / "test"), "--truth", str(truth),
                 "--out", str(tmp / "p2")]) == 2
    err = capsys.readouterr().err
    assert "no mask" in err and "3.png" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "p2").exists()  # checked before anything is written
    assert main(["predict", str(run / "winner"), str(root / "images" / "test"), "--csv", str(tmp / "x.csv")]) == 2
    assert "for classifiers" in capsys.readouterr().err


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "masks" / "train" / "2.png").unlink(), "images/train/2.png: no mask"),
    (lambda root: Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "val" / "1.png"),
     "must be the size of their image"),
])
def test_search_on_missing_or_mis_sized_masks_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, damage, message):
    root = segmentation_folder(tmp_path / "data", {"train": 6, "val": 3, "test": 3}, size=24)
    damage(root)
    assert main(["search", "--dataset", str(root), *SEARCH, "--results", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flag", [("--teacher", "vgg16"), ("--head-pool", "gmp")])
def test_a_classification_setting_in_a_segmentation_search_is_refused_in_one_line(tmp_path, capsys, flag):
    root = segmentation_folder(tmp_path / "data", {"train": 6, "val": 3, "test": 3}, size=24)
    assert main(["search", "--dataset", str(root), *SEARCH, *flag, "--results", str(tmp_path / "runs")]) == 2
    assert f"{flag[0]}: a classification setting" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_time_budgeted_search_plans_its_phases_and_ends_with_a_winner(tmp_path):
    """--time-budget instead of --trials: exploration stops at its share, rung 2 and the seeds get theirs."""
    root = segmentation_folder(tmp_path / "data", {"train": 24, "val": 6, "test": 6}, size=48)
    assert main(["search", "--dataset", str(root), "--budget-flops", "5e6", "--time-budget", "20s", "--epochs", "3",
                 "--final-seeds", "1", "--top-k", "1", "--workers", "1", "--results", str(tmp_path / "runs"),
                 "--json"]) == 0
    summary = json.loads((tmp_path / "runs" / "data-5m" / "summary.json").read_text())
    plan = summary["plan"]
    assert 0 < plan["explore_end"] < plan["promote_end"] < plan["final_end"] <= plan["end"] == 20
    assert summary["trials"]["finished"] >= 1 and summary["winner"]["exported_seed"] == 0


def test_resuming_a_search_on_other_data_is_one_line_and_keeps_what_the_run_holds(tmp_path, capsys):
    root = segmentation_folder(tmp_path / "data", {"train": 12, "val": 4, "test": 4}, size=32)
    args = ["search", "--dataset", str(root), "--budget-flops", "3e6", "--trials", "1", "--epochs", "1",
            "--promote-epochs", "1", "--final-epochs", "1", "--final-seeds", "1", "--top-k", "1", "--workers", "1",
            "--results", str(tmp_path / "runs")]
    assert main(args) == 0
    run = tmp_path / "runs" / "data-3m"
    before = (run / "summary.json").read_bytes()
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(root / "images" / "train" / "0.png")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not the data" in err and len(err.strip().splitlines()) == 1
    assert (run / "summary.json").read_bytes() == before


def test_a_resumed_run_keeps_its_finished_rung_2_and_seeds_instead_of_training_them_again(tmp_path, capsys):
    """A long CPU run is split across sessions: what an earlier session finished is read back, not retrained."""
    root = segmentation_folder(tmp_path / "data", {"train": 12, "val": 4, "test": 4}, size=32)
    args = ["search", "--dataset", str(root), "--budget-flops", "3e6", "--trials", "1", "--epochs", "1",
            "--promote-epochs", "2", "--final-epochs", "2", "--final-seeds", "2", "--top-k", "1", "--workers", "1",
            "--results", str(tmp_path / "runs"), "--json"]
    assert main(args) == 0
    run = tmp_path / "runs" / "data-3m"
    first = json.loads((run / "winner" / "metrics.json").read_text())
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "rung 2: trial 0 kept from an earlier session" in err
    assert "final seed 0: kept" in err and "final seed 1: kept" in err
    again = json.loads((run / "winner" / "metrics.json").read_text())
    assert again["test_miou_over_seeds"] == first["test_miou_over_seeds"] and again["exported_seed"] == first[
        "exported_seed"]
