"""Shared output helpers: rich for people, plain JSON for machines, atomic file writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from defect_nas.core.errors import DefectNasError

console = Console()


def print_json(obj: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    print(json.dumps(obj, indent=2, default=str))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temporary file and rename, so an existing file is never left half-written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise DefectNasError(f"{path}: cannot write ({e.strerror}); choose a writable location") from None
    return path


def millions(n: float) -> str:
    return f"{n / 1e6:,.2f}M"
