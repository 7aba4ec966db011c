"""Pareto fronts over trial rows: which candidates no other beats on every axis."""

from __future__ import annotations


def pareto_front(rows: list[dict], maximize: str = "val_accuracy", minimize: tuple[str, ...] = ("macs",)) -> list[dict]:
    """Rows (with all keys present) not dominated by any other: higher ``maximize``, lower ``minimize``."""
    pts = [r for r in rows if r.get(maximize) is not None and all(r.get(k) is not None for k in minimize)]

    def dominates(a: dict, b: dict) -> bool:
        no_worse = a[maximize] >= b[maximize] and all(a[k] <= b[k] for k in minimize)
        better = a[maximize] > b[maximize] or any(a[k] < b[k] for k in minimize)
        return no_worse and better

    return sorted((r for r in pts if not any(dominates(o, r) for o in pts)), key=lambda r: r[minimize[0]])
