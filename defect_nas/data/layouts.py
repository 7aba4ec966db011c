"""The NEU surface-defect set in the three layouts people have on disk.

* ``neu-flat``: NEU-CLS as released, all files in one folder, class from the name
  prefix (``Cr_1.bmp``, ``In_3.bmp``, ``Pa_``, ``PS_``, ``RS_``, ``Sc_``).
* ``neu-folders``: one folder per class, any case and the usual spellings
  (``Crazing``, ``Pitted``, ``pitted_surface``, ``Rolled``, ``rolled-in_scale``...),
  optionally below split folders (``train/Crazing``, ``valid/...``: merged).
* ``neu-det``: NEU-DET, ``IMAGES/`` (+ ``ANNOTATIONS/``), YOLO-style
  ``images/{train,val}/`` or Kaggle's ``{train,validation}/images/<class>/``;
  class from the file name (``crazing_1.jpg``).

Whatever the layout, classes come out in the canonical (alphabetical) order of
`NEU_CLASSES`, so label ids mean the same thing everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from defect_nas.core.errors import DataError

from .files import SPLIT_DIR_NAMES, Scan, images_in, natural_key, rel, subdirs

NEU_CLASSES: tuple[str, ...] = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
NEU_PREFIXES: dict[str, str] = {
    "crazing": "Cr",
    "inclusion": "In",
    "patches": "Pa",
    "pitted_surface": "PS",
    "rolled-in_scale": "RS",
    "scratches": "Sc",
}
_ALIASES: dict[str, str] = {
    **{k: "crazing" for k in ("crazing", "craze", "crazings", "cr")},
    **{k: "inclusion" for k in ("inclusion", "inclusions", "in")},
    **{k: "patches" for k in ("patches", "patch", "pa")},
    **{k: "pitted_surface" for k in ("pittedsurface", "pitted", "pittedsurfaces", "pits", "ps")},
    **{k: "rolled-in_scale" for k in ("rolledinscale", "rolled", "rolledin", "rolledinscales", "rs")},
    **{k: "scratches" for k in ("scratches", "scratch", "sc")},
}
_STEM = re.compile(r"^(?P<prefix>.*?)[ _\-]*(?P<num>\d+)$")


def neu_class(name: str) -> str | None:
    """Canonical NEU class of a folder name or name prefix (case and separators ignored)."""
    return _ALIASES.get(re.sub(r"[^a-z]", "", name.lower()))


def neu_class_from_stem(stem: str) -> str | None:
    """Class of a file stem such as `Cr_17`, `PS_3`, `crazing_1` or `rolled-in_scale_20`."""
    m = _STEM.match(stem)
    return neu_class(m.group("prefix")) if m else None


def _scan(root: Path, layout: str, pairs: list[tuple[Path, str]]) -> Scan:
    pairs.sort(key=lambda pc: (NEU_CLASSES.index(pc[1]), natural_key(rel(pc[0], root))))
    return Scan(
        root=root,
        layout=layout,
        files=tuple(rel(p, root) for p, _ in pairs),
        labels=tuple(NEU_CLASSES.index(c) for _, c in pairs),
        class_names=NEU_CLASSES,
    )


def _missing(found: set[str]) -> str:
    return ", ".join(c for c in NEU_CLASSES if c not in found)


def _by_stem(root: Path, files: list[Path], where: Path, layout: str) -> Scan | None:
    """Classify files by name; None if none look like NEU, DataError if only some do."""
    pairs = [(p, neu_class_from_stem(p.stem)) for p in files]
    if not any(c for _, c in pairs):
        return None
    bad = [p for p, c in pairs if c is None]
    if bad:
        raise DataError(
            f"cannot tell the NEU class of {bad[0]} from its name: expected a prefix such as "
            "Cr_, In_, Pa_, PS_, RS_, Sc_ or crazing_ (rename or remove the file)"
        )
    found = {c for _, c in pairs}
    if len(found) < len(NEU_CLASSES):
        raise DataError(
            f"NEU folder {where} has no images of: {_missing(found)} (an incomplete copy? re-download or re-import it)"
        )
    return _scan(root, layout, pairs)  # type: ignore[arg-type]


def _det_image_dirs(root: Path) -> list[Path]:
    """`images/` below root, or below each split folder (Kaggle's NEU-DET: train/images, validation/images)."""
    dirs = subdirs(root)
    direct = [d for d in dirs if d.name.lower() == "images"]
    if direct or not dirs or not all(d.name.lower() in SPLIT_DIR_NAMES for d in dirs):
        return direct
    return [c for d in dirs for c in subdirs(d) if c.name.lower() == "images"]


def _scan_det(root: Path) -> Scan | None:
    files = [p for d in _det_image_dirs(root) for p in images_in(d, recursive=True)]
    return _by_stem(root, files, root, "neu-det") if files else None


def _class_dirs(root: Path) -> list[Path]:
    """Class folders directly below root, or below split folders (train/valid/test)."""
    dirs = subdirs(root)
    if dirs and all(d.name.lower() in SPLIT_DIR_NAMES for d in dirs):
        return [c for d in dirs for c in subdirs(d)]
    return dirs


def _scan_folders(root: Path) -> Scan | None:
    dirs = [d for d in _class_dirs(root) if images_in(d, recursive=True)]
    if not dirs or any(neu_class(d.name) is None for d in dirs):
        return None
    owner: dict[tuple[str, Path], Path] = {}
    pairs: list[tuple[Path, str]] = []
    for d in dirs:
        cls = neu_class(d.name)
        key = (cls, d.parent)
        if key in owner:
            raise DataError(f"folders {owner[key]} and {d} are both NEU class {cls}: keep one of them")
        owner[key] = d
        pairs += [(p, cls) for p in images_in(d, recursive=True)]
    found = {c for _, c in pairs}
    if len(found) < len(NEU_CLASSES):
        return None  # a few NEU-like names: let the generic ImageFolder loader take it
    return _scan(root, "neu-folders", pairs)  # type: ignore[arg-type]


def _scan_flat(root: Path) -> Scan | None:
    if any(images_in(d, recursive=True) for d in subdirs(root)):
        return None
    files = images_in(root)
    return _by_stem(root, files, root, "neu-flat") if files else None


def scan_neu(root: Path) -> Scan | None:
    """Scan `root` as NEU (det, folders or flat); None if it does not look like NEU at all."""
    for scan in (_scan_det, _scan_folders, _scan_flat):
        found = scan(root)
        if found is not None:
            return found
    return None
