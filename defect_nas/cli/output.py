"""Shared output helpers: rich for people, plain JSON for machines."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

console = Console()


def print_json(obj: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    print(json.dumps(obj, indent=2, default=str))


def millions(n: float) -> str:
    return f"{n / 1e6:,.2f}M"
