"""Segmentation data: both mask layouts load, a missing, extra or mis-sized mask is one line naming the
file, the published split is kept, and augmentation moves a mask with its image."""

import json

import numpy as np
import pytest
import torch
from datagen import segmentation_folder
from PIL import Image
from sklearn.metrics import jaccard_score

from defect_nas.core.errors import DataError
from defect_nas.data.masks import is_mask_layout, load_masks, mask_split
from defect_nas.evaluators.augment import paired_resized_crop, paired_views
from defect_nas.evaluators.seg_metrics import confusion, image_defect_accuracy, scores


def test_images_and_masks_by_part_load_with_their_names_and_their_own_split(tmp_path):
    root = segmentation_folder(tmp_path, {"train": 6, "val": 2, "test": 3})
    assert is_mask_layout(root)
    ds = load_masks(root)
    assert ds.images.shape == (11, 1, 48, 48) and ds.masks.shape == (11, 48, 48)
    assert ds.class_names == ("background", "blob", "scratch") and set(ds.masks.unique().tolist()) == {0, 1, 2}
    split = mask_split(ds, seed=5)
    assert split.sizes() == {"train": 6, "val": 2, "test": 3}  # the layout's parts, whatever the seed
    assert {ds.parts[i] for i in split.test.tolist()} == {"test"}


def test_a_mask_beside_each_image_saved_black_and_white_reads_as_background_and_defect(tmp_path):
    root = segmentation_folder(tmp_path, {"a": 10}, layout="beside")
    ds = load_masks(root)
    assert ds.class_names == ("background", "defect") and set(ds.masks.unique().tolist()) == {0, 1}
    assert ds.info["binary_masks_0_255"] and mask_split(ds, seed=0).sizes() == {"train": 6, "val": 2, "test": 2}


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "masks" / "train" / "3.png").unlink(), "images/train/3.png: no mask masks/train/3.png"),
    (lambda r: Image.new("L", (48, 48)).save(r / "masks" / "val" / "9.png"), "masks/val/9.png: a mask without"),
    (lambda r: Image.new("L", (40, 48)).save(r / "masks" / "test" / "0.png"), "mask is 40x48 but its image"),
    (lambda r: Image.new("RGB", (48, 48)).save(r / "masks" / "test" / "1.png"), "mask has mode RGB"),
    (lambda r: (r / "classes.txt").write_text("background\nblob\n"), "names 2 classes but a mask holds"),
])
def test_a_missing_extra_or_mis_sized_mask_is_one_line_naming_the_file_and_the_fix(tmp_path, damage, message):
    root = segmentation_folder(tmp_path, {"train": 4, "val": 2, "test": 2})
    damage(root)
    with pytest.raises(DataError, match=message) as e:
        load_masks(root)
    assert "\n" not in str(e.value)


def test_every_view_and_crop_keeps_each_mask_on_its_image():
    """A mask that is its image thresholded stays so after the paired views and crops; the same views
    applied to the images alone would break it (checked too, so the test can fail)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 1, 32, 32, generator=g) > 0.7).float()  # pure 0/1 pixels
    x[:, :, :8, :] = 0  # not symmetric: a wrong view cannot match by chance
    m = (x[:, 0] > 0.5).to(torch.uint8)
    views = torch.arange(16) % 8
    xv, mv = paired_views(x, m, views)
    assert torch.equal(mv, (xv[:, 0] > 0.5).to(torch.uint8))
    assert not torch.equal(m[1:], (xv[1:, 0] > 0.5).to(torch.uint8))  # the views did move the pixels
    xc, mc = paired_resized_crop(x, m, 0.3, g)
    pure = (xc[:, 0] < 0.01) | (xc[:, 0] > 0.99)  # pixels not blended by the bilinear resampling
    agree = (mc == (xc[:, 0] > 0.5).to(torch.uint8))[pure].float().mean()
    assert pure.float().mean() > 0.3 and agree > 0.97


def test_iou_from_the_confusion_matrix_equals_scikit_learns_jaccard():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (4, 16, 16))
    pred = np.where(rng.random(truth.shape) < 0.8, truth, rng.integers(0, 3, truth.shape))
    s = scores(confusion(pred, truth, 3))
    ref = 100 * jaccard_score(truth.ravel(), pred.ravel(), average=None)
    assert np.allclose(s.iou, ref) and np.isclose(s.miou, ref.mean()) and np.isclose(s.miou_defects, ref[1:].mean())
    empty = np.zeros_like(truth)
    assert image_defect_accuracy(empty, truth) == 0.0 and image_defect_accuracy(truth, truth) == 100.0


def test_train_segments_a_folder_of_masks_and_scores_each_class_on_the_test_part(tmp_path, capsys):
    """The data's layout selects the task; the run folder holds the model (ONNX included) and the per-class
    IoU of the held-out part; the network learns the two shapes."""
    from defect_nas.cli.main import main

    root = segmentation_folder(tmp_path / "data", {"train": 48, "val": 12, "test": 12}, size=48)
    code = main(["train", "--dataset", str(root), "--arch", "prototype:residual/resnet-proto", "--epochs", "12",
                 "--batch-size", "8", "--results", str(tmp_path / "runs"), "--json"])
    assert code in (0, None)
    run = tmp_path / "runs" / "train-seg-resnet-proto-s0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["iou"]) == {"background", "blob", "scratch"}
    assert metrics["test"]["miou"] > 60 and metrics["test"]["iou"]["blob"] > 50  # chance is ~30% mIoU here
    assert (run / "model" / "model.onnx").is_file() and metrics["split"]["policy"] == "the layout's own parts"
    assert json.loads((run / "split.json").read_text())["test"][0].startswith("images/test/")


def test_classification_on_mask_data_and_segmentation_with_a_missing_mask_are_one_line_exit_2(tmp_path, capsys):
    from defect_nas.cli.main import main

    root = segmentation_folder(tmp_path / "data", {"train": 4, "val": 2, "test": 2})
    assert main(["train", "--dataset", str(root), "--arch", "prototype:residual/resnet-proto", "--task",
                 "classify", "--results", str(tmp_path / "runs")]) == 2
    assert "segmentation data" in capsys.readouterr().err
    (root / "masks" / "val" / "1.png").unlink()
    assert main(["train", "--dataset", str(root), "--arch", "prototype:residual/resnet-proto",
                 "--results", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "images/val/1.png: no mask" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing written


def test_datasets_lists_a_segmentation_folder_with_its_parts_not_as_unreadable(tmp_path):
    from defect_nas.data.registry import list_datasets

    segmentation_folder(tmp_path / "root" / "seg", {"train": 4, "val": 2, "test": 2}, size=16)
    entry = next(e for e in list_datasets(tmp_path / "root") if e["name"] == "seg")
    assert entry["layout"].startswith("segmentation") and entry["images"] == 8
    assert entry["classes"] == {"test images": 2, "train images": 4, "val images": 2}


def test_a_class_absent_from_the_scored_images_is_null_in_json_not_nan():
    """``predict --truth`` on a few images: a class in neither mask has no IoU; scores.json must stay
    valid JSON (NaN is not), and the mean counts only the classes present."""
    import json

    truth = np.zeros((2, 8, 8), dtype=np.int64)
    truth[:, :4] = 1  # background and class 1 only; class 2 absent from both maps
    d = scores(confusion(truth, truth, 3)).as_dict(("background", "inclusion", "patches"))
    assert d["iou"]["patches"] is None and d["miou"] == 100.0
    assert json.loads(json.dumps(d, allow_nan=False)) == d
