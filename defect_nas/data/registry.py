"""Find datasets by name under $DEFECT_NAS_DATA (or by path) and load them.

Names: ``neu`` (a folder named neu-cls, NEU-CLS, neu, NEU-DET, ... under the data
root), ``dagm`` (dagm, DAGM2007, DAGM_2007, ...), or the name of any other folder
under the data root. Anything else is treated as a folder path. The layout is
detected from the folder's contents: DAGM, then NEU, then ImageFolder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from defect_nas.core.errors import DataError
from defect_nas.core.registry import Registry

from .dagm import is_dagm, load_dagm, scan_dagm
from .dataset import Dataset, build_dataset
from .files import Scan, is_hidden, require_dir, subdirs
from .folder import scan_folder
from .imageio import RESIZE, check_channels, read_images
from .layouts import NEU_CLASSES, neu_class, scan_neu

DATA_ENV = "DEFECT_NAS_DATA"


@dataclass(frozen=True)
class KnownDataset:
    """A public dataset found by name under the data root."""

    folders: tuple[str, ...]  # folder names (lower-case, separators removed), in order of preference
    expected: str  # the folder name the error message suggests
    hint: str = ""  # how else to get it
    mask_classes: tuple[str, ...] | None = None  # a segmentation set's class names, index order (0 = background)


DATASETS: Registry[KnownDataset] = Registry("dataset", "--dataset")
DATASETS.add("neu", KnownDataset(("neucls", "neu", "neudet", "neusurfacedefectdatabase"), "neu-cls",
                                 " (or import a download with `defect-nas datasets import neu PATH`)"))
DATASETS.add("dagm", KnownDataset(("dagm", "dagm2007"), "dagm"))
DATASETS.add("neu-seg", KnownDataset(("neuseg",), "neu-seg", mask_classes=(  # its SOURCE.md: 0..3
    "background", "inclusion", "patches", "scratches")))


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The folder that holds the datasets: `data_root` if given, else $DEFECT_NAS_DATA."""
    if data_root is None:
        value = os.environ.get(DATA_ENV, "").strip()
        if not value:
            raise DataError(
                f"{DATA_ENV} is not set: export {DATA_ENV}=/path/to/datasets (the folder that holds neu-cls/)"
            )
        data_root = value
    return require_dir(Path(data_root).expanduser(), f"data root ({DATA_ENV})")


def find_registered(name: str, data_root: str | Path | None = None) -> Path:
    """Folder of a registered dataset under the data root; DataError says where it was expected."""
    known = DATASETS.get(name)
    root = resolve_data_root(data_root)
    by_key = {_key(d.name): d for d in subdirs(root)}
    for key in known.folders:
        if key in by_key:
            return by_key[key]
    raise DataError(f"dataset '{name}' not found: expected the folder {root / known.expected}{known.hint}")


def scan_path(root: Path) -> Scan:
    """Detect the layout of a folder and list its images (no decoding)."""
    root = require_dir(root)
    if is_dagm(root):
        return scan_dagm(root)
    _not_masks(root)
    return scan_neu(root) or scan_folder(root)


def _is_masks(root: Path) -> bool:
    from .masks import is_mask_layout

    return is_mask_layout(root)


def _not_masks(root: Path) -> None:
    """Class folders named images/ and masks/ would be nonsense, not an error: say what the data is."""
    if _is_masks(root):
        raise DataError(f"{root}: images with masks are segmentation data, not class folders: add --task segment")


def dataset_folder(name_or_path: str | Path, data_root: str | Path | None = None) -> Path:
    """The folder a ``--dataset`` value names (a registered name or a path), resolved."""
    return _resolve(name_or_path, data_root)[1].resolve()


def _resolve(name_or_path: str | Path, data_root: str | Path | None) -> tuple[str, Path]:
    text = str(name_or_path)
    if text.lower() in DATASETS:
        return text.lower(), find_registered(text.lower(), data_root)
    path = Path(text).expanduser()
    looks_like_path = path.exists() or os.sep in text or "/" in text or text.startswith(".")
    if not looks_like_path and (data_root is not None or os.environ.get(DATA_ENV)):
        candidate = resolve_data_root(data_root) / text
        if candidate.is_dir() and not is_hidden(candidate):
            return text, candidate
    if not path.exists() and not looks_like_path:
        names = ", ".join(DATASETS.names())
        raise DataError(f"no dataset '{text}': not a folder, and the registered names are {names}")
    return require_dir(path).name, path


def load_dataset(
    name_or_path: str | Path,
    *,
    data_root: str | Path | None = None,
    channels: int | None = None,
    size: int | Sequence[int] | None = None,
    seed: int = 0,
    resize: str = RESIZE,
) -> Dataset:
    """Load a dataset fully into memory.

    name_or_path: "neu", "dagm", a folder name under the data root, or a folder path.
    channels: 1 or 3 to force; default 1 unless some image is colour.
    size: output (height, width) or int; default the square on the most common image size's shorter side
    (see `imageio` for the resize policy). For DAGM it is the patch size (default 224).
    resize: how other sizes reach it (``imageio.RESIZE_MODES``; benchmarks compare them).
    seed: only DAGM uses it (location of the clean training patches).
    """
    check_channels(channels)
    name, folder = _resolve(name_or_path, data_root)
    folder = require_dir(folder)
    if is_dagm(folder):
        patch = size if isinstance(size, int) else (size[0] if size else 224)
        return load_dagm(folder, patch=patch, seed=seed, channels=channels, name="dagm")
    _not_masks(folder)
    scan = scan_neu(folder)
    if name == "neu" and scan is None:
        found = {neu_class(d.name) for d in subdirs(folder)} - {None}
        missing = ", ".join(c for c in NEU_CLASSES if c not in found) or "all"
        raise DataError(
            f"{folder} is not a complete NEU copy (missing class folders: {missing}): re-download or re-import it"
        )
    if scan is None:
        scan = scan_folder(folder)
    else:
        name = "neu"  # NEU content under any folder name
    pixels, content_ids, info = read_images([folder / f for f in scan.files], size=size, channels=channels,
                                             resize=resize)
    return build_dataset(
        name=name,
        root=folder,
        pixels=pixels,
        labels=scan.labels,
        class_names=scan.class_names,
        paths=scan.files,
        content_ids=content_ids,
        layout=scan.layout,
        negative_classes=scan.negative_classes,
        info=info,
    )


def load_segmentation(name_or_path: str | Path, data_root: str | Path | None = None):
    """A segmentation set (``data.masks``) by name or path; a registered one carries its class names
    unless its folder has a ``classes.txt``."""
    from .masks import load_masks

    name, folder = _resolve(name_or_path, data_root)
    known = DATASETS.get(name).mask_classes if name in DATASETS else None
    return load_masks(require_dir(folder).resolve(), name=name, class_names=known)


def list_datasets(data_root: str | Path | None = None) -> list[dict]:
    """What is under the data root: name, path, layout, classes (name -> images) and image count.

    Folders that hold no recognisable dataset are listed with layout "unreadable"
    and the reason in "error", so a user sees why a copy is not picked up.
    """
    root = resolve_data_root(data_root)
    registered = {}
    for name in DATASETS.names():
        try:
            registered[find_registered(name, root)] = name
        except DataError:
            pass
    out = []
    for folder in subdirs(root):
        entry: dict = {"name": registered.get(folder, folder.name), "path": str(folder)}
        if _is_masks(folder):  # segmentation data: images per part, its classes are per pixel
            from .masks import scan_masks

            try:
                layout, pairs = scan_masks(folder)
            except DataError as exc:
                out.append({**entry, "layout": "unreadable", "classes": {}, "images": 0, "error": str(exc)})
                continue
            parts = [p[2] or "all" for p in pairs]
            out.append({**entry, "layout": f"segmentation ({layout})", "images": len(pairs),
                        "classes": {f"{part} images": parts.count(part) for part in dict.fromkeys(parts)}})
            continue
        try:
            scan = scan_path(folder)
        except DataError as exc:
            out.append({**entry, "layout": "unreadable", "classes": {}, "images": 0, "error": str(exc)})
            continue
        out.append({**entry, "layout": scan.layout, "classes": scan.counts(), "images": len(scan.files)})
    return out
