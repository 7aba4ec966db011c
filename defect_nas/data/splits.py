"""Seeded, stratified, duplicate-aware train/val/test splits and k-fold.

Defaults (`make_split`): per class, ``test=0.2`` of the images, then ``val=1/6``
of what is left; the rest is train. On NEU (300 per class) this is exactly
TinyDefectNet's protocol: 240 train / 60 test per class, with 40 of the 240
held out as validation for model selection (200 train / 40 val / 60 test);
retrain on train+val for the final number if you want the full 240. The same
fractions apply to any other dataset. An int instead of a fraction means a count
per class. Datasets with an official division (DAGM's Train/Test, in
``Dataset.subsets``) keep it: test is the official test part and val is carved
from the official train part.

Leakage guard: samples with the same ``content_id`` (identical pixels, e.g. NEU's
Pa_101/Pa_105) or the same ``Dataset.groups`` value (patches of one image) form
one group that always lands in a single part. Groups are ordered by content hash
before the seeded shuffle, so the same data in another folder layout splits the
same way.

Why not scikit-learn's splitters: ``train_test_split(stratify=...)`` ignores groups, and
``StratifiedGroupKFold`` gives folds, not exact per-class counts (NEU's 240/60 protocol needs
exactly 60 test images per class), nor an order independent of the folder layout.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from defect_nas.core.errors import DataError

from .dataset import Dataset

DEFAULT_TEST = 0.2
DEFAULT_VAL = 1 / 6
PARTS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """Index tensors (int64, ascending) into a Dataset, plus how they were made."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    fingerprint: str
    seed: int
    policy: Mapping[str, object] = field(default_factory=dict)

    def part(self, name: str) -> torch.Tensor:
        """Indices of "train", "val" or "test"."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def sizes(self) -> dict[str, int]:
        return {p: len(self.part(p)) for p in PARTS}

    def _check(self, dataset: Dataset) -> None:
        if dataset.fingerprint != self.fingerprint:
            raise DataError(
                f"this split was made for data {self.fingerprint[:12]}, "
                f"not {dataset.name} ({dataset.fingerprint[:12]}): "
                "make a new split for this dataset"
            )

    def to_json(self, dataset: Dataset) -> dict:
        """Fingerprint, policy, per-class counts and the relative file paths of each part."""
        self._check(dataset)
        out: dict = {
            "format": "defect-nas/split-v1",
            "dataset": dataset.name,
            "fingerprint": dataset.fingerprint,
            "seed": self.seed,
            "policy": dict(self.policy),
            "counts": {
                p: dict(
                    zip(
                        dataset.class_names,
                        torch.bincount(dataset.labels[self.part(p)], minlength=dataset.num_classes).tolist(),
                    )
                )
                for p in PARTS
            },
        }
        for p in PARTS:
            out[p] = [dataset.paths[i] for i in self.part(p).tolist()]
        return out

    @classmethod
    def from_json(cls, data: Mapping, dataset: Dataset) -> Split:
        """Rebuild a split saved with `to_json`; DataError if it belongs to other data."""
        if data.get("fingerprint") != dataset.fingerprint:
            raise DataError(
                f"split file is for data {str(data.get('fingerprint'))[:12]}, "
                f"not {dataset.name} ({dataset.fingerprint[:12]}): "
                "use the matching dataset or make a new split"
            )
        where = {p: i for i, p in enumerate(dataset.paths)}
        parts = {}
        for p in PARTS:
            missing = [q for q in data.get(p, []) if q not in where]
            if missing:
                raise DataError(f"split file lists {missing[0]}, which is not in {dataset.root}: make a new split")
            parts[p] = _tensor(where[q] for q in data.get(p, []))
        return cls(
            **parts, fingerprint=dataset.fingerprint, seed=int(data.get("seed", 0)), policy=dict(data.get("policy", {}))
        )


def _tensor(indices) -> torch.Tensor:
    return torch.tensor(sorted(indices), dtype=torch.int64)


def sample_groups(dataset: Dataset) -> list[list[int]]:
    """Sample indices that must stay together (same pixels or same source image), in a layout-free order."""
    parent = list(range(len(dataset)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = [("c", cid) for cid in dataset.content_ids]
    if dataset.groups is not None:
        keys += [("g", g) for g in dataset.groups.tolist()]
    first: dict = {}
    for j, key in enumerate(keys):
        i = j % len(dataset)
        if key in first:
            parent[find(i)] = find(first[key])
        else:
            first[key] = i
    members: dict[int, list[int]] = {}
    for i in range(len(dataset)):
        members.setdefault(find(i), []).append(i)
    groups = list(members.values())
    groups.sort(key=lambda g: min(dataset.content_ids[i] for i in g))
    return groups


def _stratum(group: list[int], labels: list[int]) -> int:
    """Class a group is stratified under: its most common label (ties: smallest id)."""
    counts = Counter(labels[i] for i in group)
    best = max(counts.values())
    return min(c for c, n in counts.items() if n == best)


def _count(spec: float, n: int, what: str, name: str) -> int:
    """Per-class count from a fraction (round half up, at least 1 if n >= 2) or an int."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float)) or spec < 0:
        raise DataError(f"{what} must be a fraction in [0, 1) or a count per class, got {spec!r}")
    if isinstance(spec, int):
        k = spec
    else:
        if spec >= 1:
            raise DataError(f"{what}={spec} is not a fraction below 1: give a fraction or an int count per class")
        k = math.floor(spec * n + 0.5)
        if spec > 0 and k == 0 and n >= 2:
            k = 1
    if k >= n:
        raise DataError(
            f"class {name} has {n} images left: cannot put {k} in {what} and keep some for training; lower {what}"
        )
    return k


def _fill(groups: list[list[int]], quotas: dict[str, int], rng: np.random.Generator) -> dict[str, list[int]]:
    """Deal shuffled groups to parts: largest first, each to a part with room, chosen with odds = room left."""
    order = rng.permutation(len(groups))
    ordered = sorted((groups[i] for i in order), key=len, reverse=True)
    room = dict(quotas)
    out: dict[str, list[int]] = {p: [] for p in quotas}
    names = list(quotas)
    for g in ordered:
        fits = [p for p in names if room[p] >= len(g)]
        if fits:
            weights = np.array([room[p] for p in fits], dtype=float)
            part = fits[int(rng.choice(len(fits), p=weights / weights.sum()))]
        else:
            part = max(names, key=lambda p: room[p])
        out[part] += g
        room[part] -= len(g)
    return out


def _by_class(dataset: Dataset, groups: list[list[int]]) -> dict[int, list[list[int]]]:
    labels = dataset.labels.tolist()
    strata: dict[int, list[list[int]]] = {c: [] for c in range(dataset.num_classes)}
    for g in groups:
        strata[_stratum(g, labels)].append(g)
    return strata


def make_split(
    dataset: Dataset,
    *,
    seed: int = 0,
    test: float | None = None,
    val: float | None = None,
    use_subsets: bool = True,
) -> Split:
    """Stratified, seeded train/val/test split (see the module docstring for the defaults).

    test: fraction of each class (or count per class) for test; ignored when the
    dataset has official subsets and `use_subsets` is true.
    val: fraction (or count per class) of each class's non-test part held out for model selection.
    """
    test = DEFAULT_TEST if test is None else test
    val = DEFAULT_VAL if val is None else val
    official = use_subsets and dataset.subsets is not None
    strata = _by_class(dataset, sample_groups(dataset))
    parts: dict[str, list[int]] = {p: [] for p in PARTS}
    for c, groups in strata.items():
        name = dataset.class_names[c]
        rng = np.random.default_rng([seed, c])
        if official:
            fixed = [g for g in groups if any(dataset.subsets[i] == "test" for i in g)]
            rest = [g for g in groups if not any(dataset.subsets[i] == "test" for i in g)]
            parts["test"] += [i for g in fixed for i in g]
        else:
            n = sum(len(g) for g in groups)
            if n < 3:
                raise DataError(f"class {name} has {n} images: a train/val/test split needs at least 3 per class")
            n_test = _count(test, n, "test", name)
            dealt = _fill(groups, {"test": n_test, "rest": n - n_test}, rng)
            parts["test"] += dealt["test"]
            rest = _regroup(dealt["rest"], groups)
        n_rest = sum(len(g) for g in rest)
        if n_rest == 0:
            raise DataError(f"class {name} has no training images in {dataset.root}: add images or use another split")
        n_val = _count(val, n_rest, "val", name)
        dealt = _fill(rest, {"val": n_val, "train": n_rest - n_val}, rng)
        parts["val"] += dealt["val"]
        parts["train"] += dealt["train"]
    policy = {"kind": "holdout", "val": val, "test": "official" if official else test}
    return Split(**{p: _tensor(parts[p]) for p in PARTS}, fingerprint=dataset.fingerprint, seed=seed, policy=policy)


def _regroup(indices: list[int], groups: list[list[int]]) -> list[list[int]]:
    """The groups (kept in their original order) whose members are in `indices`."""
    chosen = set(indices)
    return [g for g in groups if g[0] in chosen]
