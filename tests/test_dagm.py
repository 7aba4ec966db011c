"""DAGM 2007 (Kim et al. 12-class patch protocol) on generated DAGM-like textures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import check_split, make_dagm

from defect_nas.core.errors import DataError
from defect_nas.data import (
    dagm_image_labels,
    dagm_image_predictions,
    dagm_patch_origins,
    dagm_train_origin,
    dagm_vote,
    load_dagm,
    load_dataset,
    make_split,
)

# --------------------------------------------------------------------------- voting and patches


def test_vote_majority_texture_and_any_defect():
    assert dagm_vote([2] * 9) == 2  # texture 1, all clean
    assert dagm_vote([2] * 8 + [3]) == 3  # one defective patch => defective
    assert dagm_vote([0, 0, 0, 0, 0, 2, 2, 2, 5]) == 1  # texture 0 wins 5:4 (2,2,2,5 are texture 1, 2)
    assert dagm_vote([4, 4, 4, 4, 2, 2, 2, 2, 0]) == 2  # tie 4:4 between textures 1 and 2 -> lowest id
    assert dagm_vote(torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 0])) == 1
    assert dagm_vote([1, 0, 0, 0, 0, 0, 0, 0, 0], min_defective=2) == 0
    with pytest.raises(ValueError):
        dagm_vote([])


def test_image_predictions_group_patches():
    preds = torch.tensor([2, 2, 3, 0, 0, 0])
    groups = torch.tensor([7, 7, 7, 1, 1, 1])
    ids, out = dagm_image_predictions(preds, groups)
    assert ids.tolist() == [1, 7] and out.tolist() == [0, 3]
    ids2, labels = dagm_image_labels(torch.tensor([3, 3, 3, 0, 0, 0]), groups)
    assert torch.equal(ids, ids2) and labels.tolist() == [0, 3]


def test_nine_overlapping_patches_cover_512():
    origins = dagm_patch_origins(512, 512)
    assert len(origins) == 9
    assert sorted({y for y, _ in origins}) == [0, 144, 288] == sorted({x for _, x in origins})
    covered = np.zeros((512, 512), bool)
    for y, x in origins:
        covered[y : y + 224, x : x + 224] = True
    assert covered.all()


def test_train_patch_contains_the_defect():
    mask = np.zeros((512, 512), bool)
    mask[400:440, 480:505] = True
    for seed in range(20):
        y, x = dagm_train_origin(mask, 512, 512, 224, np.random.default_rng(seed))
        assert 0 <= y <= 288 and 0 <= x <= 288
        assert mask[y : y + 224, x : x + 224].sum() == mask.sum()
    big = np.zeros((512, 512), bool)
    big[10:500, 200:260] = True  # taller than a patch: centred on the defect
    y, x = dagm_train_origin(big, 512, 512, 224, np.random.default_rng(0))
    assert big[y : y + 224, x : x + 224].any()
    clean = {dagm_train_origin(None, 512, 512, 224, np.random.default_rng(s)) for s in range(10)}
    assert len(clean) > 1


# --------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def dagm_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dagm") / "DAGM2007"
    boxes = make_dagm(root, textures=2, train=(2, 2), test=(1, 1))
    return root, boxes


@pytest.fixture(scope="module")
def dagm(dagm_root):
    return load_dagm(dagm_root[0], seed=0)


def test_dagm_classes_and_samples(dagm):
    ds = dagm
    assert ds.class_names == ("Class1_clean", "Class1_defective", "Class2_clean", "Class2_defective")
    assert ds.negative_classes == (0, 2)
    assert ds.image_size == (224, 224) and ds.channels == 1
    # per texture: 4 train images -> 4 patches, 2 test images -> 18 patches
    assert ds.subsets.count("train") == 8 and ds.subsets.count("test") == 36
    assert len(set(ds.groups.tolist())) == 12
    assert ds.class_counts() == {
        "Class1_clean": 2 + 9,
        "Class1_defective": 2 + 9,
        "Class2_clean": 11,
        "Class2_defective": 11,
    }
    test_paths = [p for p, s in zip(ds.paths, ds.subsets) if s == "test"]
    assert "Class1/Test/0001.PNG#144,288" in test_paths
    assert len(set(ds.paths)) == len(ds)


def test_dagm_defective_train_patches_hold_the_defect(dagm, dagm_root):
    _, boxes = dagm_root
    ds = dagm
    for path, label, subset in zip(ds.paths, ds.labels.tolist(), ds.subsets):
        if subset != "train" or label % 2 == 0:
            continue
        file, origin = path.split("#")
        y, x = map(int, origin.split(","))
        y0, y1, x0, x1 = boxes[file]
        assert y <= y0 and y1 < y + 224 and x <= x0 and x1 < x + 224
        root = ds.root
        assert (root / file).is_file()


def test_dagm_patch_pixels_come_from_the_image(dagm):
    from PIL import Image

    ds = dagm
    i = ds.paths.index("Class2/Test/0002.PNG#288,0")
    full = np.asarray(Image.open(ds.root / "Class2/Test/0002.PNG"))
    assert np.array_equal(ds.images[i, 0].numpy(), full[288:512, 0:224])


def test_dagm_clean_patch_location_is_seeded(dagm, dagm_root):
    again = load_dagm(dagm_root[0], seed=0)
    other = load_dagm(dagm_root[0], seed=1)
    assert again.paths == dagm.paths and again.fingerprint == dagm.fingerprint
    assert other.paths != dagm.paths and other.fingerprint != dagm.fingerprint


def test_dagm_split_keeps_official_test_and_votes(dagm):
    ds = dagm
    split = make_split(ds, seed=0, val=0.5)
    check_split(split, ds)
    assert set(split.test.tolist()) == {i for i, s in enumerate(ds.subsets) if s == "test"}
    idx = split.test
    ids, preds = dagm_image_predictions(ds.labels[idx], ds.groups[idx])  # a perfect patch classifier
    ids2, truth = dagm_image_labels(ds.labels[idx], ds.groups[idx])
    assert torch.equal(ids, ids2) and torch.equal(preds, truth) and len(ids) == 4


def test_dagm_by_name_and_labels_txt(tmp_path):
    make_dagm(tmp_path / "dagm", textures=1, train=(1, 1), test=(1, 1), size=256, labels_txt=True)
    ds = load_dataset("dagm", data_root=tmp_path)
    assert ds.name == "dagm" and ds.layout == "dagm" and len(ds) == 2 + 18
    assert ds.class_counts() == {"Class1_clean": 10, "Class1_defective": 10}


def test_dagm_labels_txt_with_missing_mask(tmp_path):
    root = tmp_path / "dagm"
    make_dagm(root, textures=1, train=(1, 1), test=(1, 1), size=256, labels_txt=True)
    (root / "Class1" / "Train" / "Label" / "0002_label.PNG").unlink()
    with pytest.raises(DataError, match="0002_label.PNG"):
        load_dagm(root)


def test_dagm_missing_test_folder_and_small_images(tmp_path):
    root = tmp_path / "dagm"
    make_dagm(root, textures=1, train=(1, 1), test=(1, 1), size=256)
    load_dagm(root, patch=128)
    with pytest.raises(DataError, match="smaller than the 300 px patch"):
        load_dagm(root, patch=300)
    import shutil

    shutil.rmtree(root / "Class1" / "Test")
    with pytest.raises(DataError, match="no Test subfolder"):
        load_dagm(root)


def test_dagm_texture_without_defects(tmp_path):
    root = tmp_path / "dagm"
    make_dagm(root, textures=1, train=(2, 0), test=(1, 0), size=256)
    with pytest.raises(DataError, match="no defective images"):
        load_dagm(root)
