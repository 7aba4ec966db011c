"""Any ImageFolder-style path: one subfolder per class (``./my_parts/ok/*.png``).

Class names are the folder names, sorted like torchvision's ImageFolder, so label
ids agree with it. Split folders (``train/``, ``val/``, ``test/`` each holding the
class folders) are merged by class name. Folders whose name means "no defect"
(ok, good, normal, clean, ...) are marked as negative classes for TPR/TNR.
"""

from __future__ import annotations

import re
from pathlib import Path

from defect_nas.core.errors import DataError

from .files import SPLIT_DIR_NAMES, Scan, images_in, natural_key, rel, subdirs

NEGATIVE_NAMES = frozenset(
    {
        "ok",
        "good",
        "normal",
        "clean",
        "pass",
        "passed",
        "negative",
        "nodefect",
        "nodefects",
        "defectfree",
        "nondefective",
        "notdefective",
        "nondefect",
        "intact",
        "undamaged",
        "background",
    }
)


def is_negative_name(name: str) -> bool:
    """True for class names that mean "no defect" (case and separators ignored)."""
    return re.sub(r"[^a-z]", "", name.lower()) in NEGATIVE_NAMES


def scan_folder(root: Path) -> Scan:
    """List an ImageFolder tree; DataError for no class folders, an empty class or a single class."""
    dirs = subdirs(root)
    layout = "imagefolder"
    if dirs and all(d.name.lower() in SPLIT_DIR_NAMES for d in dirs):
        layout = "imagefolder-splits"
        dirs = [c for d in dirs for c in subdirs(d)]
    if not dirs:
        if images_in(root):
            raise DataError(
                f"{root} holds images but no class subfolders: "
                f"put each class in its own folder ({root}/<class>/image.png)"
            )
        raise DataError(f"no images found in {root}: expected one subfolder per class ({root}/<class>/image.png)")
    by_class: dict[str, list[Path]] = {}
    for d in dirs:
        files = images_in(d, recursive=True)
        if not files:
            raise DataError(f"class folder {d} has no images: add images (.png, .jpg, .bmp, ...) or remove the folder")
        by_class.setdefault(d.name, []).extend(files)
    names = tuple(sorted(by_class))
    if len(names) < 2:
        raise DataError(f"only one class ({names[0]}) found in {root}: a classifier needs at least 2 class folders")
    files_out, labels = [], []
    for label, name in enumerate(names):
        for p in sorted(by_class[name], key=lambda p: natural_key(rel(p, root))):
            files_out.append(rel(p, root))
            labels.append(label)
    negatives = tuple(i for i, n in enumerate(names) if is_negative_name(n))
    return Scan(
        root=root,
        layout=layout,
        files=tuple(files_out),
        labels=tuple(labels),
        class_names=names,
        negative_classes=negatives,
    )
