"""DAGM 2007 with Kim et al.'s 12-class patch protocol.

Layout (the Heidelberg release): ``<root>/ClassN/{Train,Test}/NNNN.PNG``; defect
masks ``<part>/Label/NNNN_label.PNG``. When ``Label/Labels.txt`` exists (tab
separated: index, 1 if defective, image file, 0, mask file) it decides which
images are defective; otherwise an image is defective when its mask exists. The
older ``ClassN_def/`` release with ellipse parameters is not supported.

Classes: texture folders sorted by N; texture t gives class ``2t`` =
``ClassN_clean`` and ``2t+1`` = ``ClassN_defective``, so 6 textures give 12
classes. Clean classes are the dataset's ``negative_classes``.

Samples: every Train image gives ONE patch (clean: a random location seeded by
``seed`` and the file path, so it does not depend on load order; defective: a
random location whose patch contains the defect's bounding box, or, when the box
is larger than the patch, a patch centred on the defect pixel nearest the box
centre). Every Test image gives the 9 overlapping patches of a 3x3 grid (for
512 px and 224 px patches: offsets 0, 144, 288), labelled with the image's
class. ``groups`` ties patches to their image and ``subsets`` keeps the official
Train/Test division. `dagm_vote` turns the 9 patch predictions back into one
image prediction.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from defect_nas.core.errors import DataError

from .dataset import Dataset, build_dataset
from .files import Scan, images_in, rel, require_dir, subdirs
from .imageio import check_channels, choose_channels, decode_image, parallel_map, pixel_hash, to_chw

DAGM_PATCH = 224
DAGM_GRID = 3
_CLASS_DIR = re.compile(r"^class(\d+)$", re.IGNORECASE)
_OLD_DEF_DIR = re.compile(r"^class(\d+)_def$", re.IGNORECASE)


def is_dagm(root: Path) -> bool:
    """True when `root` holds DAGM texture folders (Class1/Train, Class2/Test, ... or the old Class1_def)."""
    for d in subdirs(root):
        if _OLD_DEF_DIR.match(d.name):
            return True
        if _CLASS_DIR.match(d.name) and any(c.name.lower() in ("train", "test") for c in subdirs(d)):
            return True
    return False


def _child(folder: Path, name: str) -> Path | None:
    """Case-insensitive sub-folder lookup (Train/train, Label/label)."""
    return next((d for d in subdirs(folder) if d.name.lower() == name.lower()), None)


def read_labels_txt(path: Path) -> dict[str, str | None]:
    """Parse a DAGM Labels.txt: image file name -> mask file name (None for a clean image)."""
    entries: dict[str, str | None] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.replace("\ufeff", "").split()
        if len(parts) >= 3 and parts[1] in ("0", "1") and "." in parts[2]:
            if parts[1] == "1":
                entries[parts[2]] = parts[4] if len(parts) >= 5 else f"{Path(parts[2]).stem}_label.PNG"
            else:
                entries[parts[2]] = None
    if not entries:
        raise DataError(
            f"cannot read {path}: expected lines '<index> <0|1> <image file> 0 <mask file>'; fix or delete it"
        )
    return entries


def _part_items(part: Path, root: Path) -> list[tuple[str, str | None]]:
    """(image, mask or None) for one Train/Test folder, both relative to root."""
    images = images_in(part)
    if not images:
        raise DataError(f"DAGM folder {part} has no images: restore the .PNG files")
    label_dir = _child(part, "Label")
    masks = {p.name.lower(): p for p in images_in(label_dir)} if label_dir else {}
    txt = next((p for p in label_dir.iterdir() if p.name.lower() == "labels.txt"), None) if label_dir else None
    listed = read_labels_txt(txt) if txt else {}
    items: list[tuple[str, str | None]] = []
    for img in images:
        if img.name in listed:
            mask_name = listed[img.name]
            mask = masks.get(mask_name.lower()) if mask_name else None
            if mask_name and mask is None:
                raise DataError(
                    f"{txt} marks {img.name} defective but its mask {label_dir / mask_name} is missing: restore it"
                )
        else:
            mask = masks.get(f"{img.stem}_label{img.suffix}".lower()) or masks.get(f"{img.stem}_label.png")
        items.append((rel(img, root), rel(mask, root) if mask else None))
    return items


def scan_dagm(root: Path) -> Scan:
    """List DAGM images with 12-class labels; extra holds per-image 'subsets' and 'masks'."""
    dirs = subdirs(root)
    textures = sorted(
        (d for d in dirs if _CLASS_DIR.match(d.name)), key=lambda d: int(_CLASS_DIR.match(d.name).group(1))
    )
    if not textures:
        if any(_OLD_DEF_DIR.match(d.name) for d in dirs):
            raise DataError(
                f"{root} is the old DAGM release (ClassN_def/ with ellipse labels): "
                "use the one with ClassN/Train/Label masks"
            )
        raise DataError(f"no DAGM texture folders (Class1, Class2, ...) in {root}")
    files, labels, subsets, masks = [], [], [], []
    names: list[str] = []
    for t, tex in enumerate(textures):
        names += [f"{tex.name}_clean", f"{tex.name}_defective"]
        for part_name in ("Train", "Test"):
            part = _child(tex, part_name)
            if part is None:
                raise DataError(
                    f"DAGM texture folder {tex} has no {part_name} subfolder: expected {tex}/Train and {tex}/Test"
                )
            for image, mask in _part_items(part, root):
                files.append(image)
                labels.append(2 * t + (mask is not None))
                subsets.append(part_name.lower())
                masks.append(mask)
        for d, kind in ((0, "clean"), (1, "defective")):
            if 2 * t + d not in labels:
                raise DataError(f"DAGM texture folder {tex} has no {kind} images: the 12-class protocol needs both")
    return Scan(
        root=root,
        layout="dagm",
        files=tuple(files),
        labels=tuple(labels),
        class_names=tuple(names),
        negative_classes=tuple(range(0, len(names), 2)),
        extra={"subsets": tuple(subsets), "masks": tuple(masks)},
    )


def dagm_patch_origins(
    height: int, width: int, patch: int = DAGM_PATCH, grid: int = DAGM_GRID
) -> list[tuple[int, int]]:
    """Top-left (y, x) of the grid x grid overlapping patches covering the image, row-major."""
    if height < patch or width < patch:
        raise ValueError(f"image {width}x{height} is smaller than the {patch}px patch")

    def axis(n: int) -> list[int]:
        return [(n - patch) // 2] if grid == 1 else [round(i * (n - patch) / (grid - 1)) for i in range(grid)]

    return [(y, x) for y in axis(height) for x in axis(width)]


def _axis_start(lo: int, hi: int, anchor: int, n: int, patch: int, rng: np.random.Generator) -> int:
    """Start on one axis: random among starts covering [lo, hi]; centred on anchor if it cannot fit."""
    if hi - lo + 1 <= patch:
        first, last = max(0, hi - patch + 1), min(lo, n - patch)
        return int(rng.integers(first, last + 1))
    return int(min(max(anchor - patch // 2, 0), n - patch))


def dagm_train_origin(
    mask: np.ndarray | None, height: int, width: int, patch: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left of the training patch: random (clean) or containing the defect (mask given)."""
    if mask is None:
        return int(rng.integers(0, height - patch + 1)), int(rng.integers(0, width - patch + 1))
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    k = int(np.argmin((ys - (y0 + y1) / 2) ** 2 + (xs - (x0 + x1) / 2) ** 2))
    y = _axis_start(int(y0), int(y1), int(ys[k]), height, patch, rng)
    x = _axis_start(int(x0), int(x1), int(xs[k]), width, patch, rng)
    return y, x


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    mask = decode_image(path)
    mask = (mask.max(axis=2) if mask.ndim == 3 else mask) > 0
    if mask.shape != shape:
        raise DataError(
            f"defect mask {path} is {mask.shape[1]}x{mask.shape[0]} "
            f"but its image is {shape[1]}x{shape[0]}: fix the mask"
        )
    if not mask.any():
        raise DataError(f"defect mask {path} is empty: the image is listed as defective; fix the mask or Labels.txt")
    return mask


def load_dagm(
    root: Path,
    *,
    patch: int = DAGM_PATCH,
    grid: int = DAGM_GRID,
    seed: int = 0,
    channels: int | None = None,
    name: str = "dagm",
    workers: int | None = None,
) -> Dataset:
    """Load DAGM as 224 px patches (1 per Train image, 9 per Test image); see the module docstring."""
    root = require_dir(Path(root), "DAGM folder")
    check_channels(channels)
    scan = scan_dagm(root)
    subsets, masks = scan.extra["subsets"], scan.extra["masks"]

    def crops(i: int) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
        path = root / scan.files[i]
        arr = decode_image(path)
        h, w = arr.shape[:2]
        if h < patch or w < patch:
            raise DataError(f"image {path} is {w}x{h}, smaller than the {patch} px patch: use a smaller patch size")
        if subsets[i] == "train":
            mask = _read_mask(root / masks[i], (h, w)) if masks[i] else None
            rng = np.random.default_rng([seed, zlib.crc32(scan.files[i].encode())])
            origins = [dagm_train_origin(mask, h, w, patch, rng)]
        else:
            origins = dagm_patch_origins(h, w, patch, grid)
        return origins, [arr[y : y + patch, x : x + patch].copy() for y, x in origins]

    per_image = parallel_map(crops, list(range(len(scan.files))), workers)
    flat = [(i, o, c) for i, (origins, cs) in enumerate(per_image) for o, c in zip(origins, cs)]
    c = choose_channels([c for _, _, c in flat], channels)
    out = np.empty((len(flat), c, patch, patch), dtype=np.uint8)

    def place(j: int) -> str:
        out[j] = to_chw(flat[j][2], c)
        return pixel_hash(out[j])

    content_ids = parallel_map(place, list(range(len(flat))), workers)
    return build_dataset(
        name=name,
        root=root,
        pixels=out,
        labels=[scan.labels[i] for i, _, _ in flat],
        class_names=scan.class_names,
        paths=[f"{scan.files[i]}#{y},{x}" for i, (y, x), _ in flat],
        content_ids=content_ids,
        layout="dagm",
        negative_classes=scan.negative_classes,
        groups=[i for i, _, _ in flat],
        subsets=[subsets[i] for i, _, _ in flat],
        info={"patch": patch, "grid": grid, "seed": seed, "source_images": len(scan.files), "channels": c},
    )


def _ids(values) -> list[int]:
    if isinstance(values, torch.Tensor):
        return [int(v) for v in values.reshape(-1).tolist()]
    return [int(v) for v in values]


def dagm_vote(patch_class_ids: Sequence[int] | torch.Tensor, *, min_defective: int = 1) -> int:
    """One image's class from its patches' predicted class ids (12-class encoding 2*texture + defective).

    Texture: majority vote over the patches (a tie goes to the lowest texture id).
    Defective: at least `min_defective` patches (default 1: any patch) predicted a defective class.
    """
    ids = _ids(patch_class_ids)
    if not ids:
        raise ValueError("dagm_vote needs at least one patch prediction")
    votes = Counter(i // 2 for i in ids)
    best = max(votes.values())
    texture = min(t for t, n in votes.items() if n == best)
    defective = sum(i % 2 for i in ids) >= min_defective
    return 2 * texture + int(defective)


def _per_group(values, groups) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for v, g in zip(_ids(values), _ids(groups)):
        out.setdefault(g, []).append(v)
    return out


def dagm_image_predictions(
    patch_preds: Sequence[int] | torch.Tensor, groups: Sequence[int] | torch.Tensor, *, min_defective: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vote per source image: (image group ids ascending, image class ids), e.g. on `ds.groups[split.test]`."""
    per = _per_group(patch_preds, groups)
    keys = sorted(per)
    preds = [dagm_vote(per[g], min_defective=min_defective) for g in keys]
    return torch.tensor(keys, dtype=torch.int64), torch.tensor(preds, dtype=torch.int64)


def dagm_image_labels(
    labels: Sequence[int] | torch.Tensor, groups: Sequence[int] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """True class per source image (all patches of an image share its label), aligned with dagm_image_predictions."""
    per = _per_group(labels, groups)
    keys = sorted(per)
    return torch.tensor(keys, dtype=torch.int64), torch.tensor([per[g][0] for g in keys], dtype=torch.int64)
