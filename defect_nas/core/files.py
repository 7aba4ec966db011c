"""Atomic writes: a reader (another worker, a resumed run, a crash) never sees a half-written file."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from defect_nas.core.errors import DefectNasError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError in the block that names no file gets ``path``: a full disk fails a write, not
    its open, and Python then names no file ("cannot access a file: No space left on device")."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; whatever is written there replaces ``path`` in one
    rename when the block ends without error, and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with naming(path):
            yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block ends without error it replaces
    ``path`` (an earlier export, say) in two renames, otherwise it is removed and ``path`` is untouched:
    an interrupted export never leaves weights of one model beside the ONNX file of another."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():  # a crash between the two renames below: the old one is back
        os.replace(old, path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        with naming(path):
            yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; the result is an ordinary folder
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text``; an unwritable place is one line naming it."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise DefectNasError(f"{path}: cannot write ({e.strerror}); choose a writable location") from None
    return Path(path)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as CSV; the header is every key in order of first appearance (a later row may carry a
    column the first lacks, e.g. a learning curve's raw-weights score once averaging starts); a
    row's missing keys are empty cells. No rows: an empty file."""
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    return write_text_atomic(path, out.getvalue())


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings; [] when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_csv_row(path: str | Path, row: dict[str, Any], fields: list[str]) -> None:
    """Append one row (the header first when the file is new): a benchmark's finished runs survive
    an interruption, so a long benchmark resumes where it stopped."""
    path = Path(path)
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)


WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}  # main() makes these one line


def writable_folder(folder: str | Path, flag: str) -> Path:
    """Create ``folder`` if needed and prove it takes a file, before any work whose results go there:
    an unwritable ``--results`` / ``--out`` used to surface as a traceback after the training."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise DefectNasError(f"{flag} {folder}: cannot write there ({e.strerror or e}); "
                             "choose a writable folder") from None
    return folder
