"""Import a user's NEU download (folder or .zip, any NEU layout) as ``<data_root>/neu-cls``.

Checks before writing: the 6 classes with exactly 300 images each, every image
decodes. Writes into a hidden temporary folder next to the destination and
renames it into place, so a crash or a refusal never leaves a half-written
``neu-cls``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from defect_nas.core.errors import DataError

from .files import IMAGE_EXTS, Scan, images_in, is_hidden, subdirs
from .imageio import decode_image, parallel_map
from .layouts import NEU_CLASSES, scan_neu

NEU_PER_CLASS = 300
_MAX_UNZIPPED = 4 << 30  # refuse archives that would expand past 4 GiB (NEU is ~75 MB)


def _extract(archive: Path, into: Path) -> None:
    """Extract image members only, refusing paths that escape `into` (zip-slip)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [
                m
                for m in zf.infolist()
                if not m.is_dir()
                and PurePosixPath(m.filename).suffix.lower() in IMAGE_EXTS
                and not any(is_hidden(Path(part)) for part in PurePosixPath(m.filename).parts)
            ]
            if sum(m.file_size for m in members) > _MAX_UNZIPPED:
                raise DataError(f"{archive} expands to more than 4 GiB: this is not the NEU archive")
            base = into.resolve()
            for m in members:
                target = (base / m.filename).resolve()
                if base not in target.parents:
                    raise DataError(f"{archive} contains the unsafe path {m.filename!r}: refusing to extract it")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DataError(f"{archive} is not a readable zip file ({exc}): download it again") from None


def _find_neu(tree: Path, src: Path) -> Scan:
    """Descend through single wrapper folders (e.g. NEU-DET/) until a NEU layout is found."""
    folder = tree
    for _ in range(6):
        scan = scan_neu(folder)
        if scan is not None:
            return scan
        dirs = subdirs(folder)
        if len(dirs) != 1 or images_in(folder):
            break
        folder = dirs[0]
    raise DataError(
        f"no NEU images found in {src}: expected one folder per class ({', '.join(NEU_CLASSES)}), "
        f"flat files like Cr_1.bmp, or NEU-DET IMAGES/"
    )


def _check(scan: Scan, src: Path, per_class: int) -> None:
    counts = scan.counts()
    wrong = {c: n for c, n in counts.items() if n != per_class}
    if wrong:
        listed = ", ".join(f"{c} {n}" for c, n in counts.items())
        raise DataError(f"{src} is not a complete NEU copy ({listed}; expected {per_class} per class): re-download it")
    names: dict[tuple[int, str], str] = {}
    for f, label in zip(scan.files, scan.labels):
        key = (label, PurePosixPath(f).name.lower())
        if key in names:
            raise DataError(
                f"{src} has two files named {key[1]} for class {NEU_CLASSES[label]} ({names[key]}, {f}): remove one"
            )
        names[key] = f
    parallel_map(decode_image, [scan.root / f for f in scan.files])


def import_neu(src: Path, data_root: Path, *, per_class: int = NEU_PER_CLASS, overwrite: bool = False) -> Path:
    """Copy a verified NEU download into `data_root/neu-cls/<class>/` and return that folder.

    src: a folder or .zip in any NEU layout (flat NEU-CLS, one folder per class, NEU-DET).
    overwrite: replace an existing neu-cls (the old one is removed only after the new one is in place).
    """
    src = Path(src).expanduser()
    if not src.exists():
        raise DataError(f"{src} does not exist: give the NEU folder or .zip you downloaded")
    data_root = Path(data_root).expanduser()
    data_root.mkdir(parents=True, exist_ok=True)
    dest = data_root / "neu-cls"
    if dest.exists() and not overwrite:
        raise DataError(f"{dest} already exists: remove it first or import with overwrite")
    with tempfile.TemporaryDirectory(dir=data_root, prefix=".neu-cls.unzip-") as unzipped:
        if src.is_file():
            if not zipfile.is_zipfile(src):
                raise DataError(f"{src} is neither a folder nor a zip file: unpack it or give the .zip")
            _extract(src, Path(unzipped))
            tree = Path(unzipped)
        else:
            tree = src
        scan = _find_neu(tree, src)
        _check(scan, src, per_class)
        _install(scan, src, dest, overwrite)
    return dest


def _install(scan: Scan, src: Path, dest: Path, overwrite: bool) -> None:
    """Copy into a temp folder, then rename into place (atomic on one filesystem)."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".neu-cls.partial-"))
    backup: Path | None = None
    try:
        for cls in NEU_CLASSES:
            (tmp / cls).mkdir()
        for f, label in zip(scan.files, scan.labels):
            shutil.copyfile(scan.root / f, tmp / NEU_CLASSES[label] / PurePosixPath(f).name)
        meta = {"source": str(src), "layout": scan.layout, "classes": scan.counts()}
        (tmp / "IMPORTED.json").write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():
            if not overwrite:
                raise DataError(f"{dest} appeared while importing: remove it and import again")
            backup = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".neu-cls.old-"))
            os.rename(dest, backup / "neu-cls")
        os.rename(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and not dest.exists():
            os.rename(backup / "neu-cls", dest)
        if isinstance(exc, OSError):
            raise DataError(f"cannot write {dest} ({exc}): check free space and permissions of {dest.parent}") from None
        raise
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
