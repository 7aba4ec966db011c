"""Checks of a loaded dataset that warn rather than refuse: the data may still be usable."""

from __future__ import annotations

from collections import defaultdict

from .dataset import Dataset


def label_conflicts(dataset: Dataset) -> str | None:
    """A warning when identical images (same pixels) are filed under different classes: one copy is
    mislabelled and training learns both labels for the same picture; it used to train silently.
    The split keeps copies in one part, so the warning is all that is needed to go on."""
    where: dict[str, dict[int, str]] = defaultdict(dict)  # content id -> class -> first path
    for cid, label, path in zip(dataset.content_ids, dataset.labels.tolist(), dataset.paths):
        where[cid].setdefault(label, path)
    clashes = [places for places in where.values() if len(places) > 1]
    if not clashes:
        return None
    example = " = ".join(f"{p} ({dataset.class_names[c]})" for c, p in list(clashes[0].items())[:2])
    return (f"{len(clashes)} image(s) of {dataset.name} are filed under two or more classes with identical pixels, "
            f"e.g. {example}: remove or relabel the wrong copy")
