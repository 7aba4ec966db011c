"""Small generated datasets for the data-layer tests (no real data needed).

Every generator writes the same pixels for the same (class, index) whatever the
layout, so lossless layouts of one set must give one fingerprint.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from defect_nas.core.spec import ArchSpec, Basic, Conv, Head
from defect_nas.data import NEU_CLASSES, make_split
from defect_nas.data.dataset import Dataset, build_dataset
from defect_nas.data.imageio import pixel_hash
from defect_nas.data.layouts import NEU_PREFIXES

NEU_PREFIX = NEU_PREFIXES
KAGGLE_NAMES = {
    "crazing": "Crazing",
    "inclusion": "Inclusion",
    "patches": "Patches",
    "pitted_surface": "Pitted",
    "rolled-in_scale": "Rolled",
    "scratches": "Scratches",
}


def texture(cls: int, i: int, size: tuple[int, int] = (12, 12), seed: int = 0) -> np.ndarray:
    """A distinct grayscale image per (class, index): class-dependent stripes plus seeded noise."""
    h, w = size
    rng = np.random.default_rng([seed, cls, i])
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = 100 + 60 * np.sin((xx * (cls + 1) + yy * (i % 3)) / 3.0)
    return np.clip(stripes + rng.integers(-40, 40, size=(h, w)), 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def make_neu(
    root: Path, layout: str = "folders", n: int = 3, size: int = 12, ext: str = ".png", duplicate: bool = False
) -> Path:
    """NEU-like set with n images per class.

    layout: folders (canonical names), kaggle (Crazing/Pitted/Rolled... folders),
    splits (train/ valid/ with kaggle folders), flat (Cr_1.bmp style in one folder),
    det (IMAGES/crazing_1 + ANNOTATIONS/), det-kaggle ({train,validation}/images/crazing/crazing_1),
    yolo (images/{train,val}/crazing_1).
    duplicate: image 2 of patches is a pixel copy of image 1 (like Pa_101/Pa_105).
    """
    root.mkdir(parents=True, exist_ok=True)
    for c, cls in enumerate(NEU_CLASSES):
        for i in range(1, n + 1):
            src_i = 1 if (duplicate and cls == "patches" and i == 2) else i
            arr = texture(c, src_i, (size, size))
            stem = f"{NEU_PREFIX[cls]}_{i}"
            if layout == "folders":
                path = root / cls / f"{stem}{ext}"
            elif layout == "kaggle":
                path = root / KAGGLE_NAMES[cls] / f"{stem}{ext}"
            elif layout == "splits":
                path = root / ("train" if i % 2 else "valid") / KAGGLE_NAMES[cls] / f"{stem}{ext}"
            elif layout == "flat":
                path = root / f"{stem}{ext}"
            elif layout == "det":
                path = root / "IMAGES" / f"{cls}_{i}{ext}"
                (root / "ANNOTATIONS").mkdir(exist_ok=True)
                (root / "ANNOTATIONS" / f"{cls}_{i}.xml").write_text(f"<annotation><name>{cls}</name></annotation>")
            elif layout == "det-kaggle":
                part = "train" if i % 2 else "validation"
                path = root / part / "images" / cls / f"{cls}_{i}{ext}"
                (root / part / "annotations").mkdir(parents=True, exist_ok=True)
                (root / part / "annotations" / f"{cls}_{i}.xml").write_text("<annotation/>")
            elif layout == "yolo":
                path = root / "images" / ("train" if i % 2 else "val") / f"{cls}_{i}{ext}"
                label = root / "labels" / path.parent.name / f"{cls}_{i}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(f"{c} 0.5 0.5 0.2 0.2\n")
            else:
                raise ValueError(layout)
            save(path, arr)
    return root


def zip_dir(folder: Path, archive: Path, prefix: str = "", junk: bool = True) -> Path:
    """Zip a folder (optionally under a wrapper folder, with macOS junk entries)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{prefix}{p.relative_to(folder).as_posix()}")
        if junk:
            zf.writestr(f"__MACOSX/{prefix}._junk.png", b"not an image")
            zf.writestr(f"{prefix}.DS_Store", b"junk")
    return archive


def synthetic_dataset(
    counts: list[int],
    *,
    duplicates: list[tuple[int, int]] = (),
    shuffle_seed: int | None = None,
    groups: list[int] | None = None,
    subsets: list[str] | None = None,
    name: str = "synthetic",
) -> Dataset:
    """In-memory Dataset (1x4x4 images) with `counts[c]` images of class c, no disk I/O.

    duplicates: (i, j) pairs; sample j gets sample i's pixels. shuffle_seed permutes
    the sample order (the same data in another on-disk layout).
    """
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    n = len(labels)
    rng = np.random.default_rng(12345)
    pixels = rng.integers(0, 256, size=(n, 1, 4, 4), dtype=np.uint8)
    for i, j in duplicates:
        pixels[j] = pixels[i]
    paths = [f"c{labels[i]}/img_{i}.png" for i in range(n)]
    order = list(range(n)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(n).tolist()
    pixels = np.ascontiguousarray(pixels[order])
    return build_dataset(
        name=name,
        root=Path("/nonexistent"),
        pixels=pixels,
        labels=[labels[i] for i in order],
        class_names=[f"class{c}" for c in range(len(counts))],
        paths=[paths[i] for i in order],
        content_ids=[pixel_hash(p) for p in pixels],
        layout="synthetic",
        groups=None if groups is None else [groups[i] for i in order],
        subsets=None if subsets is None else [subsets[i] for i in order],
    )


def dagm_texture(t: int, i: int, size: int = 512) -> np.ndarray:
    """Smooth DAGM-like texture t (few bits of noise so PNG stays small and fast)."""
    rng = np.random.default_rng([7, t, i])
    yy, xx = np.mgrid[0:size, 0:size]
    base = 120 + 50 * np.sin(xx / (6.0 + 3 * t) + i) * np.cos(yy / (9.0 + 2 * t))
    return np.clip(base + rng.integers(0, 4, size=(size, size)), 0, 255).astype(np.uint8)


def make_dagm(
    root: Path,
    textures: int = 2,
    train: tuple[int, int] = (2, 2),
    test: tuple[int, int] = (1, 1),
    size: int = 512,
    labels_txt: bool = False,
    big_defect: bool = False,
) -> dict[str, tuple[int, int, int, int]]:
    """DAGM 2007-like tree: ClassN/{Train,Test}/NNNN.PNG, defects as dark ellipses with Label/NNNN_label.PNG masks.

    train/test: (clean, defective) image counts per texture. Returns the defect
    bounding box (y0, y1, x0, x1) of each defective image, keyed by its relative path.
    """
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for t in range(textures):
        for part, (n_clean, n_def) in (("Train", train), ("Test", test)):
            folder = root / f"Class{t + 1}" / part
            lines = ["1"]
            for k in range(n_clean + n_def):
                stem = f"{k + 1:04d}"
                arr = dagm_texture(t, k, size)
                defective = k >= n_clean
                if defective:
                    rng = np.random.default_rng([t, k, len(part)])
                    ry, rx = (150, 40) if big_defect else (int(rng.integers(10, 40)), int(rng.integers(10, 40)))
                    cy, cx = int(rng.integers(ry, size - ry)), int(rng.integers(rx, size - rx))
                    mask = Image.new("L", (size, size), 0)
                    ImageDraw.Draw(mask).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
                    m = np.asarray(mask) > 0
                    arr = arr.copy()
                    arr[m] = arr[m] // 3
                    save(folder / "Label" / f"{stem}_label.PNG", np.asarray(mask), compress_level=1)
                    ys, xs = np.nonzero(m)
                    boxes[f"Class{t + 1}/{part}/{stem}.PNG"] = (
                        int(ys.min()),
                        int(ys.max()),
                        int(xs.min()),
                        int(xs.max()),
                    )
                save(folder / f"{stem}.PNG", arr, compress_level=1)
                lines.append(f"{k + 1}\t{int(defective)}\t{stem}.PNG\t0\t{stem + '_label.PNG' if defective else ''}")
            if labels_txt:
                (folder / "Label").mkdir(parents=True, exist_ok=True)
                (folder / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    return boxes


def learnable_dataset(classes: int = 3, per_class: int = 40, size: int = 32, seed: int = 0) -> Dataset:
    """In-memory set a small CNN learns in a few epochs: class c = stripes of period 2 + 2c in a
    random orientation, plus noise. Rotation-invariant, like textures, so flips/rotations keep labels."""
    rng = np.random.default_rng(seed)
    pixels, labels = [], []
    for c in range(classes):
        period = 2 + 2 * c
        for _ in range(per_class):
            phase = rng.integers(0, period)
            wave = ((np.arange(size) + phase) % period < period / 2).astype(np.float32)
            img = np.tile(wave, (size, 1)) if rng.random() < 0.5 else np.tile(wave[:, None], (1, size))
            img = np.clip(img * 150 + 50 + rng.normal(0, 25, (size, size)), 0, 255).astype(np.uint8)
            pixels.append(img[None])
            labels.append(c)
    pixels = np.ascontiguousarray(np.stack(pixels))
    return build_dataset(
        name="stripes", root=Path("/nonexistent"), pixels=pixels, labels=labels,
        class_names=[f"period{2 + 2 * c}" for c in range(classes)],
        paths=[f"c{c}/{i}.png" for i, c in enumerate(labels)],
        content_ids=[pixel_hash(p) for p in pixels], layout="synthetic",
    )


def check_split(split, dataset) -> None:
    """The split invariants every split test asserts: parts disjoint, covering the data, and no group of
    identical images straddling two parts."""
    from defect_nas.data import sample_groups

    where: dict[int, str] = {}
    for p in ("train", "val", "test"):
        for i in split.part(p).tolist():
            assert i not in where, f"sample {dataset.paths[i]} is in both {where[i]} and {p}"
            where[i] = p
    assert len(where) == len(dataset), f"split covers {len(where)} of {len(dataset)} samples"
    for g in sample_groups(dataset):
        assert len({where[i] for i in g}) == 1, f"identical samples {dataset.paths[g[0]]} and others straddle parts"


TINY_SPEC = ArchSpec(1, 32, 3, (Conv(8, 3, 2),), ((Basic(16, 3, 2),),), Head())


def trained_tiny_model(ds: Dataset, folder: Path):
    """A 32-px net trained on ``ds``'s seed-0 split until it has learned (>= 80% validation) and saved to
    ``folder`` as a search's winner is: the model that predict, the line tools and parity tests run."""
    import torch

    from defect_nas.deploy.model import save_model
    from defect_nas.evaluators.trainer import TrainConfig, TrainData, train
    from defect_nas.search_spaces.build import build

    split = make_split(ds, seed=0)
    td = TrainData(ds.images[split.train], ds.labels[split.train], ds.images[split.val], ds.labels[split.val],
                   ds.class_names)
    torch.manual_seed(0)
    model = build(TINY_SPEC)
    assert train(model, td, TrainConfig(epochs=12, batch_size=16, seed=0)).val_accuracy >= 80
    save_model(model.eval(), TINY_SPEC, ds.class_names, folder)
    return split, model


def segmentation_folder(root: Path, per_part: dict[str, int] | None = None, size: int = 48,
                        layout: str = "images-masks", seed: int = 0) -> Path:
    """Grey images with a bright square (class 1, "blob") and/or a dark bar (class 2, "scratch") on
    noise, with their class-index masks: ``images/<part>/i.png`` + ``masks/<part>/i.png`` (NEU-Seg's
    layout), or ``layout="beside"``: ``i.png`` + ``i_mask.png`` in one folder, masks saved 0/255
    (a black-and-white export) with only the blob."""
    rng = np.random.default_rng(seed)
    per_part = per_part or {"train": 24, "val": 8, "test": 8}
    for part, n in per_part.items():
        for i in range(n):
            img = rng.integers(90, 140, (size, size)).astype(np.uint8)
            mask = np.zeros((size, size), np.uint8)
            s = int(rng.integers(size // 6, size // 3))
            y, x = rng.integers(0, size - s, 2)
            img[y:y + s, x:x + s], mask[y:y + s, x:x + s] = 230, 1
            if layout != "beside" and i % 2:
                r, c0 = int(rng.integers(0, size - 3)), int(rng.integers(0, size // 2))
                img[r:r + 3, c0:c0 + size // 2], mask[r:r + 3, c0:c0 + size // 2] = 20, 2
            if layout == "beside":
                Image.fromarray(img).save(root / f"{part}-{i}.png")
                Image.fromarray(mask * 255).save(root / f"{part}-{i}_mask.png")
            else:
                for kind, arr in (("images", img), ("masks", mask)):
                    (root / kind / part).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(root / kind / part / f"{i}.png")
    if layout != "beside":
        (root / "classes.txt").write_text("background\nblob\nscratch\n")
    return root
