"""Shared output helpers: rich for people, plain JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console

console = Console()


def print_json(obj: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    print(json.dumps(obj, indent=2, default=str))


def millions(n: float) -> str:
    return f"{n / 1e6:,.2f}M"


def progress_log(as_json: bool) -> Callable[[str], None]:
    """A search's progress lines: on stderr with ``--json`` (stdout keeps the summary alone, as
    scripts expect), dim on the console otherwise."""
    if as_json:
        return lambda m: print(m, file=sys.stderr, flush=True)
    return lambda m: console.print(m, style="dim", highlight=False)
