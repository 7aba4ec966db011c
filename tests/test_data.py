"""Dataset layer: NEU layouts, ImageFolder policies, errors, registry (generated data),
plus slow checks on the real NEU copy under $DEFECT_NAS_DATA."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import check_split, make_dagm, make_neu, save, texture
from PIL import Image

from defect_nas.core.errors import DataError, DefectNasError
from defect_nas.data import (
    NEU_CLASSES,
    Dataset,
    list_datasets,
    load_dataset,
    make_split,
    neu_class,
    neu_class_from_stem,
)

# --------------------------------------------------------------------------- NEU layouts


@pytest.fixture(scope="module")
def neu_trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("neu")
    return {
        "folders": make_neu(base / "folders", "folders"),
        "kaggle": make_neu(base / "kaggle", "kaggle", ext=".bmp"),
        "splits": make_neu(base / "splits", "splits"),
        "flat": make_neu(base / "flat", "flat", ext=".bmp"),
        "det": make_neu(base / "det", "det"),
        "det-kaggle": make_neu(base / "det-kaggle", "det-kaggle"),
        "yolo": make_neu(base / "yolo", "yolo"),
    }


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("folders", "neu-folders"),
        ("kaggle", "neu-folders"),
        ("splits", "neu-folders"),
        ("flat", "neu-flat"),
        ("det", "neu-det"),
        ("det-kaggle", "neu-det"),
        ("yolo", "neu-det"),
    ],
)
def test_neu_layouts_load_in_canonical_order(neu_trees, layout, expected):
    ds = load_dataset(neu_trees[layout])
    assert isinstance(ds, Dataset)
    assert ds.name == "neu" and ds.layout == expected
    assert ds.class_names == NEU_CLASSES
    assert ds.class_counts() == {c: 3 for c in NEU_CLASSES}
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (18, 1, 12, 12)
    assert ds.labels.dtype == torch.int64
    assert all("\\" not in p and not p.startswith("/") for p in ds.paths)
    assert (ds.root / ds.paths[0]).is_file()
    # the label of each sample matches its pixels (texture(class, i) wrote them)
    i = ds.paths.index(next(p for p in ds.paths if "scratches" in p.lower() or "Sc_" in p))
    assert ds.labels[i] == NEU_CLASSES.index("scratches")


def test_neu_fingerprint_is_the_same_across_layouts(neu_trees):
    prints = {layout: load_dataset(path).fingerprint for layout, path in neu_trees.items()}
    assert len(set(prints.values())) == 1, prints


def test_neu_det_jpeg_loads(tmp_path):
    ds = load_dataset(make_neu(tmp_path / "det", "det", ext=".jpg"))
    assert ds.class_counts() == {c: 3 for c in NEU_CLASSES} and ds.channels == 1


def test_neu_names_and_prefixes():
    assert neu_class("Pitted") == neu_class("pitted_surface") == neu_class("PITTED-SURFACE") == "pitted_surface"
    assert neu_class("Rolled") == neu_class("rolled-in_scale") == "rolled-in_scale"
    assert neu_class_from_stem("PS_17") == "pitted_surface"
    assert neu_class_from_stem("rolled-in_scale_20") == "rolled-in_scale"
    assert neu_class_from_stem("In_3") == "inclusion"
    assert neu_class_from_stem("photo_3") is None


def test_duplicate_pixels_share_content_id(tmp_path):
    ds = load_dataset(make_neu(tmp_path / "n", duplicate=True))
    a, b = ds.paths.index("patches/Pa_1.png"), ds.paths.index("patches/Pa_2.png")
    assert ds.content_ids[a] == ds.content_ids[b]
    assert len(set(ds.content_ids)) == len(ds) - 1
    # content id is the sha256 of the raw row-major pixels (as in the NEU SOURCE.md)
    assert ds.content_ids[a] == hashlib.sha256(ds.images[a, 0].numpy().tobytes()).hexdigest()


def test_fingerprint_sees_pixels_and_labels(tmp_path):
    root = make_neu(tmp_path / "n")
    before = load_dataset(root).fingerprint
    (root / "crazing" / "Cr_1.png").rename(root / "inclusion" / "Cr_1.png")  # one label changes
    moved = load_dataset(root).fingerprint
    save(root / "inclusion" / "Cr_1.png", texture(0, 99))  # one image changes
    assert len({before, moved, load_dataset(root).fingerprint}) == 3


def test_incomplete_neu_by_name_is_refused(tmp_path):
    root = make_neu(tmp_path / "data" / "neu-cls")
    for p in (root / "scratches").iterdir():
        p.unlink()
    (root / "scratches").rmdir()
    with pytest.raises(DataError, match="neu-cls"):
        load_dataset("neu", data_root=tmp_path / "data")


def test_flat_neu_with_unknown_file_names_it(tmp_path):
    root = make_neu(tmp_path / "flat", "flat", ext=".bmp")
    save(root / "holiday.png", texture(0, 0))
    with pytest.raises(DataError, match="holiday.png"):
        load_dataset(root)


# --------------------------------------------------------------------------- registry


def test_neu_by_name_uses_env_var(tmp_path, monkeypatch):
    make_neu(tmp_path / "neu-cls")
    monkeypatch.setenv("DEFECT_NAS_DATA", str(tmp_path))
    ds = load_dataset("neu")
    assert ds.root == (tmp_path / "neu-cls").resolve() and ds.name == "neu"
    # an explicit data_root wins over the variable
    other = tmp_path / "other"
    make_neu(other / "NEU-DET", "det")
    assert load_dataset("NEU", data_root=other).layout == "neu-det"


def test_unset_env_var_says_what_to_set(monkeypatch):
    monkeypatch.delenv("DEFECT_NAS_DATA", raising=False)
    with pytest.raises(DataError, match="DEFECT_NAS_DATA"):
        load_dataset("neu")


def test_missing_neu_names_expected_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "neu-cls")):
        load_dataset("neu", data_root=tmp_path)


def test_missing_path_and_unknown_name(tmp_path, monkeypatch):
    monkeypatch.delenv("DEFECT_NAS_DATA", raising=False)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no dataset 'mnist'"):
        load_dataset("mnist")


def test_list_datasets_and_folder_names(tmp_path):
    make_neu(tmp_path / "neu-cls")
    parts = tmp_path / "my_parts"
    for i in range(2):
        save(parts / "ok" / f"{i}.png", texture(0, i))
        save(parts / "dent" / f"{i}.png", texture(1, i))
    make_dagm(tmp_path / "DAGM_2007", textures=1, train=(1, 1), test=(1, 1), size=256)
    (tmp_path / "empty").mkdir()
    found = {d["name"]: d for d in list_datasets(tmp_path)}
    assert found["neu"]["layout"] == "neu-folders" and found["neu"]["images"] == 18
    assert found["neu"]["classes"] == {c: 3 for c in NEU_CLASSES}
    assert found["my_parts"]["layout"] == "imagefolder" and found["my_parts"]["classes"] == {"dent": 2, "ok": 2}
    assert found["dagm"]["layout"] == "dagm" and found["dagm"]["images"] == 4
    assert found["empty"]["layout"] == "unreadable" and "empty" in found["empty"]["error"]
    ds = load_dataset("my_parts", data_root=tmp_path)
    assert ds.name == "my_parts" and ds.negative_classes == (ds.class_names.index("ok"),)


# --------------------------------------------------------------------------- ImageFolder policies


def _gradient(h: int, w: int) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8)


def test_imagefolder_mixed_sizes_use_the_square_on_the_most_common_sizes_shorter_side(tmp_path):
    """The models take square inputs: a 20 x 30 majority makes a 20 x 20 dataset, each image
    scaled to it axis by axis the way predict fits a file (nothing cropped away)."""
    root = tmp_path / "parts"
    for i in range(3):
        save(root / "good" / f"g{i}.png", texture(0, i, (20, 30)))
        save(root / "scratch" / f"s{i}.png", texture(1, i, (20, 30)))
    save(root / "scratch" / "big.png", _gradient(40, 60))
    save(root / "scratch" / "tall.png", _gradient(90, 30))
    ds = load_dataset(root)
    assert ds.image_size == (20, 20) and ds.channels == 1
    assert ds.class_names == ("good", "scratch") and ds.negative_classes == (0,)
    assert ds.info["resized"] == 8 and ds.info["resize"] == "stretch"
    for name, arr in (("good/g1.png", texture(0, 1, (20, 30))), ("scratch/big.png", _gradient(40, 60)),
                      ("scratch/tall.png", _gradient(90, 30))):
        expected = np.asarray(Image.fromarray(arr).resize((20, 20), Image.Resampling.BILINEAR))
        assert np.array_equal(ds.images[ds.paths.index(name), 0].numpy(), expected), name
    from defect_nas.data.preprocess import read_for_model

    i = ds.paths.index("good/g1.png")
    assert torch.equal(read_for_model(root / "good" / "g1.png", 1, 20)[0, 0], ds.images[i, 0])  # predict sees the same


def test_images_of_many_sizes_are_squared_at_their_typical_pixel_count(tmp_path):
    """Line data: no shape holds half the images, so the side is the median sqrt(h x w)."""
    root = tmp_path / "line"
    for i, (h, w) in enumerate([(20, 80), (30, 60), (40, 40), (25, 100), (36, 64)]):
        save(root / ("ok" if i % 2 else "dent") / f"{i}.png", _gradient(h, w))
    ds = load_dataset(root)
    assert ds.image_size == (42, 42)  # sqrt(h x w): 40, 42.4, 40, 50, 48 -> median 42.4
def test_imagefolder_size_argument(tmp_path):
    root = tmp_path / "parts"
    for i in range(2):
        save(root / "a" / f"{i}.png", texture(0, i, (20, 30)))
        save(root / "b" / f"{i}.png", texture(1, i, (50, 40)))
    assert load_dataset(root, size=16).image_size == (16, 16)
    assert load_dataset(root, size=(8, 12)).image_size == (8, 12)


def test_channels_policy(tmp_path):
    root = tmp_path / "parts"
    save(root / "a" / "0.png", texture(0, 0))
    save(root / "b" / "0.png", texture(1, 0))
    gray_rgb = np.stack([texture(1, 1)] * 3, axis=2)
    save(root / "b" / "gray_as_rgb.png", gray_rgb)
    assert load_dataset(root).channels == 1  # grayscale stored as RGB is still grayscale
    three = load_dataset(root, channels=3)
    assert three.channels == 3 and torch.equal(three.images[:, 0], three.images[:, 2])
    colour = np.zeros((12, 12, 3), np.uint8)
    colour[..., 0] = 200
    save(root / "a" / "red.png", colour)
    ds = load_dataset(root)
    assert ds.channels == 3
    red = ds.images[ds.paths.index("a/red.png")]
    assert red[0].eq(200).all() and red[1].eq(0).all()
    gray = ds.images[ds.paths.index("a/0.png")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], torch.from_numpy(texture(0, 0)))
    forced = load_dataset(root, channels=1)
    assert forced.channels == 1 and int(forced.images[forced.paths.index("a/red.png"), 0, 0, 0]) == 60  # 0.299*200
    with pytest.raises(DataError, match="channels"):
        load_dataset(root, channels=2)


def test_16_bit_and_palette_images(tmp_path):
    root = tmp_path / "parts"
    wide = (np.arange(12 * 12, dtype=np.uint16).reshape(12, 12) * 400).astype(np.uint16)
    Image.fromarray(wide).save(_mkdir(root / "a") / "wide.png")  # 16-bit grey PNG (mode I;16)
    save(root / "a" / "plain.png", texture(0, 0))
    gray_palette = Image.fromarray(texture(1, 0)).convert("P")
    gray_palette.save(_mkdir(root / "b") / "palette.png")
    ds = load_dataset(root)
    assert ds.channels == 1  # a palette of greys is grey
    got = ds.images[ds.paths.index("a/wide.png"), 0].numpy()
    assert np.array_equal(got, (wide >> 8).astype(np.uint8))


def test_class_folders_named_like_dagm_are_an_imagefolder(tmp_path):
    root = tmp_path / "parts"
    for i in range(2):
        save(root / "Class1" / f"{i}.png", texture(0, i))
        save(root / "Class2" / f"{i}.png", texture(1, i))
    ds = load_dataset(root)
    assert ds.layout == "imagefolder" and ds.class_names == ("Class1", "Class2")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_split_folders_are_merged(tmp_path):
    root = tmp_path / "parts"
    for part in ("train", "test"):
        for i in range(2):
            save(root / part / "ok" / f"{i}.png", texture(0, i + (part == "test") * 10))
            save(root / part / "dent" / f"{i}.png", texture(1, i + (part == "test") * 10))
    ds = load_dataset(root)
    assert ds.layout == "imagefolder-splits" and ds.class_counts() == {"dent": 4, "ok": 4}


# --------------------------------------------------------------------------- user errors


def _two_classes(root: Path) -> Path:
    for i in range(2):
        save(root / "a" / f"{i}.png", texture(0, i))
        save(root / "b" / f"{i}.png", texture(1, i))
    return root


def test_corrupt_file_is_named(tmp_path):
    root = _two_classes(tmp_path / "parts")
    bad = root / "b" / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(root)


def test_truncated_file_is_named(tmp_path):
    root = _two_classes(tmp_path / "parts")
    good = root / "a" / "big.png"
    save(good, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    good.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="big.png"):
        load_dataset(root)


def test_empty_class_is_named(tmp_path):
    root = _two_classes(tmp_path / "parts")
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*c has no images"):
        load_dataset(root)


def test_single_class(tmp_path):
    root = tmp_path / "parts"
    save(root / "only" / "0.png", texture(0, 0))
    with pytest.raises(DataError, match="only one class"):
        load_dataset(root)


def test_images_without_class_folders(tmp_path):
    save(tmp_path / "loose" / "0.png", texture(0, 0))
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(tmp_path / "loose")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path / "nothing")


def test_file_instead_of_folder(tmp_path):
    f = save(tmp_path / "x.png", texture(0, 0))
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(f)


def test_errors_are_one_line_defect_nas_errors(tmp_path):
    with pytest.raises(DefectNasError) as info:
        load_dataset(tmp_path / "nope")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- real NEU (slow)


def _real_neu() -> Path:
    root = os.environ.get("DEFECT_NAS_DATA")
    if not root or not (Path(root) / "neu-cls").is_dir():
        pytest.skip("DEFECT_NAS_DATA is unset or has no neu-cls")
    return Path(root)


@pytest.fixture(scope="module")
def real_neu() -> Dataset:
    _real_neu()
    return load_dataset("neu")


@pytest.mark.slow
def test_real_neu_loads(real_neu):
    ds = real_neu
    assert len(ds) == 1800 and ds.class_names == NEU_CLASSES
    assert ds.class_counts() == {c: 300 for c in NEU_CLASSES}
    assert ds.image_size == (200, 200) and ds.channels == 1
    assert len(set(ds.content_ids)) == 1799
    assert load_dataset("neu").fingerprint == ds.fingerprint


@pytest.mark.slow
def test_real_neu_matches_source_digest(real_neu):
    """SOURCE.md's format-free digest: sha256 of sorted "<pixel sha256>  <class>/<stem>" lines."""
    lines = [
        f"{cid}  {real_neu.class_names[lab]}/{Path(p).stem}\n"
        for cid, lab, p in zip(real_neu.content_ids, real_neu.labels.tolist(), real_neu.paths)
    ]
    lines.sort(key=lambda line: line.split("  ", 1)[1].encode())
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert digest == "62402a133a352e9a67e1e5ec97df1092a40b382bc55070726eb470de7616d1cc"


@pytest.mark.slow
def test_real_neu_duplicate_pair_never_straddles(real_neu):
    ds = real_neu
    a, b = ds.paths.index("patches/Pa_101.png"), ds.paths.index("patches/Pa_105.png")
    assert ds.content_ids[a] == ds.content_ids[b]
    for seed in range(5):
        split = make_split(ds, seed=seed)
        check_split(split, ds)
        assert {c: n for c, n in split.to_json(ds)["counts"]["test"].items()} == {c: 60 for c in NEU_CLASSES}
        assert split.sizes() == {"train": 1200, "val": 240, "test": 360}
        parts = [p for p in ("train", "val", "test") if a in split.part(p).tolist()]
        assert parts and b in split.part(parts[0]).tolist()
