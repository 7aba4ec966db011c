"""File listing shared by every layout: which files are images, in which order.

A scan only lists files (no decoding), so `list_datasets` stays fast and the
loader can report a bad folder before spending time on pixels.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from defect_nas.core.errors import DataError

#: Extensions Pillow decodes that we accept as images (compared lower-case).
IMAGE_EXTS = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pbm"})

#: Folder names that hold a pre-made split; their class folders are merged.
SPLIT_DIR_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})


@dataclass(frozen=True)
class Scan:
    """What a layout detector found: files (relative to root) and their class names."""

    root: Path
    layout: str
    files: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    negative_classes: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        seen = Counter(self.labels)
        return {name: seen[i] for i, name in enumerate(self.class_names)}


def natural_key(text: str) -> list:
    """Sort key that puts `Cr_2` before `Cr_10` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def is_hidden(path: Path) -> bool:
    """Skip dot-files, macOS resource forks and `__MACOSX` folders from zips."""
    return path.name.startswith((".", "__MACOSX")) or path.name == "Thumbs.db"


def is_image(path: Path) -> bool:
    """True for a visible regular file with an image extension."""
    return path.suffix.lower() in IMAGE_EXTS and not is_hidden(path) and path.is_file()


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders, naturally sorted."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_hidden(p)), key=lambda p: natural_key(p.name))


def images_in(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files in a folder (optionally below it), naturally sorted by relative path."""
    if recursive:
        found = [
            p
            for p in folder.rglob("*")
            if is_image(p) and not any(is_hidden(Path(part)) for part in p.relative_to(folder).parts)
        ]
    else:
        found = [p for p in folder.iterdir() if is_image(p)]
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def require_dir(path: Path, what: str = "dataset folder") -> Path:
    """Resolve a folder or raise a DataError naming it."""
    if not path.exists():
        raise DataError(f"{what} {path} does not exist: check the path (or the DEFECT_NAS_DATA variable)")
    if not path.is_dir():
        raise DataError(f"{what} {path} is not a folder: give the folder that holds the class subfolders")
    return path.resolve()


def rel(path: Path, root: Path) -> str:
    """Posix path of `path` relative to `root` (what `Dataset.paths` stores)."""
    return path.relative_to(root).as_posix()
