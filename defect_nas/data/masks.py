"""Segmentation data: images with per-pixel class-index masks, loaded into memory.

Two layouts, detected from the folder:

* ``images/<part>/<stem>.<ext>`` with ``masks/<part>/<stem>.png`` (NEU-Seg's; parts ``train``, ``val``,
  ``test``, also spelled ``training``/``validation``), or ``images/`` and ``masks/`` without parts;
* one mask beside each image: ``<stem>.<ext>`` with ``<stem>_mask.png`` in the same folder (anywhere
  below the root): a user's own line data.

A mask holds class indices (0 = background). Masks whose only values are 0 and 255 (a common
black-and-white export) are read as 0 / 1. Class names come from ``classes.txt`` in the root (one per
line, index order), else a registered set's names (``neu-seg``), else ``background`` + ``class 1``,
``class 2``, ... (``defect`` for two classes).
Images of other sizes are scaled to the data's square as classification data is (``imageio.fit``), their
masks by nearest neighbour, so a label never blends. A missing, extra or mis-sized mask is a one-line
DataError naming the file and the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defect_nas.core.errors import DataError

from .files import images_in, is_image, natural_key, rel, require_dir
from .imageio import choose_channels, decode_image, fit, parallel_map, target_size, to_chw

MASK_SUFFIX = "_mask"
PART_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test", "testing": "test"}


@dataclass(frozen=True, eq=False)
class MaskDataset:
    """images uint8 [N, C, S, S]; masks uint8 [N, S, S] of class indices into ``class_names``;
    ``parts``: the layout's own train/val/test per image, or None (a seeded split is made)."""

    name: str
    root: Path
    images: torch.Tensor
    masks: torch.Tensor
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    parts: tuple[str, ...] | None
    fingerprint: str
    layout: str
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def pixel_shares(self) -> dict[str, float]:
        """Share of all pixels per class (the imbalance a per-pixel loss faces)."""
        counts = torch.bincount(self.masks.flatten().long(), minlength=self.num_classes).double()
        return dict(zip(self.class_names, (counts / counts.sum()).tolist()))


def is_mask_layout(root: Path) -> bool:
    """Whether a folder holds segmentation data (images with masks) rather than class folders."""
    names = {p.name.lower() for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    if {"images", "masks"} <= names:
        return True
    return any(p.stem.endswith(MASK_SUFFIX) for p in images_in(root, recursive=True)[:10_000])


def scan_masks(root: Path) -> tuple[str, list[tuple[Path, Path, str | None]]]:
    """(layout, [(image, mask, part or None)]) in a stable order; DataError on an unpaired file."""
    root = require_dir(root)
    dirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "images" in dirs and "masks" in dirs:
        return "images-masks", _scan_images_masks(root, dirs["images"], dirs["masks"])
    files = images_in(root, recursive=True)
    masks = {f.with_name(f.stem[: -len(MASK_SUFFIX)]): f for f in files if f.stem.endswith(MASK_SUFFIX)}
    images = [f for f in files if not f.stem.endswith(MASK_SUFFIX)]
    if not masks:
        raise DataError(f"{root}: no masks found: put images/<part>/x.jpg beside masks/<part>/x.png, or "
                        f"x_mask.png beside each x.jpg")
    pairs = []
    for image in images:
        mask = masks.pop(image.with_suffix(""), None)
        if mask is None:
            raise DataError(f"{rel(image, root)}: no mask beside it: add {image.stem}{MASK_SUFFIX}.png "
                            "(class indices, 0 = background) or move the image out of the folder")
        pairs.append((image, mask, None))
    if masks:
        orphan = sorted(masks.values())[0]
        raise DataError(f"{rel(orphan, root)}: a mask without its image {orphan.stem[: -len(MASK_SUFFIX)]}.*: "
                        "add the image or delete the mask")
    return "mask-beside-image", sorted(pairs, key=lambda p: natural_key(rel(p[0], root)))


def _scan_images_masks(root: Path, images: Path, masks: Path) -> list[tuple[Path, Path, str | None]]:
    parted = [d for d in images.iterdir() if d.is_dir() and d.name.lower() in PART_NAMES]
    groups = [(d, masks / d.name, PART_NAMES[d.name.lower()]) for d in parted] or [(images, masks, None)]
    pairs: list[tuple[Path, Path, str | None]] = []
    for image_dir, mask_dir, part in sorted(groups, key=lambda g: g[0].name):
        if not mask_dir.is_dir():
            raise DataError(f"{rel(image_dir, root)}: no {rel(mask_dir, root)} folder beside it: add the masks "
                            "of these images there, by the same file names with .png")
        by_stem = {m.stem: m for m in mask_dir.iterdir() if is_image(m)}
        for image in sorted((f for f in image_dir.iterdir() if is_image(f)), key=lambda f: natural_key(f.name)):
            mask = by_stem.pop(image.stem, None)
            if mask is None:
                raise DataError(f"{rel(image, root)}: no mask {rel(mask_dir, root)}/{image.stem}.png: add it "
                                "(class indices, 0 = background) or move the image out of the folder")
            pairs.append((image, mask, part))
        if by_stem:
            orphan = sorted(by_stem.values())[0]
            raise DataError(f"{rel(orphan, root)}: a mask without its image in {rel(image_dir, root)}: add the "
                            "image (same file name) or delete the mask")
    if not pairs:
        raise DataError(f"{rel(images, root)}: no images: put the images there and their masks in "
                        f"{rel(masks, root)}")
    return pairs


def read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "1", "I", "I;16"):
                raise DataError(f"{path}: mask has mode {im.mode}: save masks as 8-bit single-channel PNGs "
                                "of class indices (0 = background)")
            return np.asarray(im.convert("L") if im.mode == "1" else im).astype(np.int64)
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot decode mask ({e.__class__.__name__}): replace or delete it") from None


def _class_names(root: Path, top: int, known: tuple[str, ...] | None) -> tuple[str, ...]:
    listed = root / "classes.txt"
    if listed.is_file():
        names = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        if top >= len(names):
            raise DataError(f"{listed}: names {len(names)} classes but a mask holds the value {top}: add the "
                            "missing names (one per line, index order) or fix the masks")
        return names
    if known is not None and top < len(known):
        return known
    return ("background", "defect") if top <= 1 else ("background", *(f"class {i}" for i in range(1, top + 1)))


def load_masks(root: Path, channels: int | None = None, name: str | None = None,
               class_names: tuple[str, ...] | None = None) -> MaskDataset:
    """Decode every image and mask of a segmentation folder into memory (see the module docstring)."""
    layout, pairs = scan_masks(root)
    images = parallel_map(decode_image, [p[0] for p in pairs])
    masks = parallel_map(read_mask, [p[1] for p in pairs])
    for (image, mask, _), a, m in zip(pairs, images, masks):
        if a.shape[:2] != m.shape:
            raise DataError(f"{rel(mask, root)}: mask is {m.shape[1]}x{m.shape[0]} but its image {rel(image, root)} "
                            f"is {a.shape[1]}x{a.shape[0]}: masks must be the size of their image")
    binary = all(set(np.unique(m).tolist()) <= {0, 255} for m in masks)
    if binary:
        masks = [(m > 0).astype(np.int64) for m in masks]
    top = max(int(m.max()) for m in masks)
    names = _class_names(root, top, class_names)
    side = target_size([a.shape[:2] for a in images])
    c = choose_channels(images, channels)
    x = np.stack([to_chw(fit(a, side), c) for a in images])
    y = np.stack([m if m.shape == side else np.asarray(Image.fromarray(m.astype(np.uint8)).resize(
        (side[1], side[0]), Image.Resampling.NEAREST)) for m in masks]).astype(np.uint8)
    h = hashlib.sha256(f"defect-nas/masks-v1 {x.shape} {names}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    parts = None if pairs[0][2] is None else tuple(p[2] or "" for p in pairs)
    info = {"size": list(side), "channels": c, "binary_masks_0_255": binary,
            "resized": sum(a.shape[:2] != side for a in images)}
    return MaskDataset(name or Path(root).name, Path(root), torch.from_numpy(x), torch.from_numpy(y), names,
                       tuple(rel(p[0], root) for p in pairs), parts, h.hexdigest(), layout, info)


def mask_split(ds: MaskDataset, seed: int = 0, val_share: float = 0.15, test_share: float = 0.15):
    """The layout's own train/val/test when it has them (NEU-Seg's published split), a seeded val carved
    from train when it has no val part, else a seeded split of the whole set."""
    from .splits import Split

    n = len(ds)
    g = torch.Generator().manual_seed(seed)
    if ds.parts is not None and {"train", "test"} <= set(ds.parts):
        idx = {p: torch.tensor([i for i, q in enumerate(ds.parts) if q == p], dtype=torch.int64)
               for p in ("train", "val", "test")}
        policy = "the layout's own parts"
        if not len(idx["val"]):
            perm = idx["train"][torch.randperm(len(idx["train"]), generator=g)]
            k = max(1, round(val_share * len(perm)))
            idx["val"], idx["train"] = perm[:k], perm[k:]
            policy += f", val a seeded {val_share:.0%} of train"
    else:
        perm = torch.randperm(n, generator=g)
        nv, nt = max(1, round(val_share * n)), max(1, round(test_share * n))
        idx = {"val": perm[:nv], "test": perm[nv: nv + nt], "train": perm[nv + nt:]}
        policy = f"seeded {1 - val_share - test_share:.0%}/{val_share:.0%}/{test_share:.0%}"
    if min(len(v) for v in idx.values()) == 0:
        raise DataError(f"{ds.root}: {n} image(s) cannot fill train, val and test: add images")
    return Split(*(idx[p].sort().values for p in ("train", "val", "test")), ds.fingerprint, seed, {"policy": policy})


def masks_at(ds: MaskDataset, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (bilinear, as classification data is resized) and masks (nearest: labels never blend) at ``size``."""
    from .preprocess import resize_uint8

    if size == ds.images.shape[-1]:
        return ds.images, ds.masks
    masks = torch.nn.functional.interpolate(ds.masks[:, None].float(), size=(size, size), mode="nearest")
    return resize_uint8(ds.images, size), masks[:, 0].to(torch.uint8)
