"""Splits: defaults, determinism, stratification, duplicate grouping, JSON round trip."""

from __future__ import annotations

import json

import pytest
import torch
from datagen import check_split, synthetic_dataset

from defect_nas.core.errors import DataError
from defect_nas.data import Split, make_split

NEU_LIKE = [300] * 6


def _per_class(ds, idx: torch.Tensor) -> list[int]:
    return torch.bincount(ds.labels[idx], minlength=ds.num_classes).tolist()


def _contents(ds, split: Split) -> dict[str, frozenset]:
    return {p: frozenset(ds.content_ids[i] for i in split.part(p).tolist()) for p in ("train", "val", "test")}


def test_default_is_tinydefectnet_protocol_with_val():
    ds = synthetic_dataset(NEU_LIKE)
    split = make_split(ds)
    check_split(split, ds)
    assert _per_class(ds, split.test) == [60] * 6
    assert _per_class(ds, split.val) == [40] * 6
    assert _per_class(ds, split.train) == [200] * 6
    assert split.train.dtype == torch.int64
    assert torch.equal(split.train, split.train.sort().values)


def test_duplicates_stay_together_and_counts_stay_exact():
    dups = [(600, 604), (10, 20), (900, 1700)]  # same class twice, and one pair across classes
    ds = synthetic_dataset(NEU_LIKE, duplicates=dups)
    for seed in range(6):
        split = make_split(ds, seed=seed)
        check_split(split, ds)
        where = {i: p for p in ("train", "val", "test") for i in split.part(p).tolist()}
        assert all(where[i] == where[j] for i, j in dups)
        assert _per_class(ds, split.test)[2] == 60  # the in-class pair does not break exact counts


def test_same_seed_same_split_other_seed_other_split():
    ds = synthetic_dataset([30, 25, 40])
    a, b, c = make_split(ds, seed=3), make_split(ds, seed=3), make_split(ds, seed=4)
    assert all(torch.equal(a.part(p), b.part(p)) for p in ("train", "val", "test"))
    assert not torch.equal(a.test, c.test)


def test_fraction_defaults_on_other_datasets():
    ds = synthetic_dataset([50, 10, 7])
    split = make_split(ds)
    check_split(split, ds)
    assert _per_class(ds, split.test) == [10, 2, 1]  # 20 % of each class, at least one
    assert _per_class(ds, split.val) == [7, 1, 1]  # 1/6 of the rest, rounded half up, at least one
    assert _per_class(ds, split.train) == [33, 7, 5]


def test_counts_and_zero_val():
    ds = synthetic_dataset([20, 20])
    split = make_split(ds, test=5, val=0)
    assert _per_class(ds, split.test) == [5, 5] and len(split.val) == 0


def test_split_does_not_depend_on_sample_order():
    """Same pixels in another folder layout (another order) give the same partition of content."""
    a = synthetic_dataset([40, 30], duplicates=[(1, 2)])
    b = synthetic_dataset([40, 30], duplicates=[(1, 2)], shuffle_seed=9)
    assert a.fingerprint == b.fingerprint
    assert _contents(a, make_split(a, seed=5)) == _contents(b, make_split(b, seed=5))


def test_to_json_and_back():
    ds = synthetic_dataset([12, 12])
    split = make_split(ds, seed=1)
    data = json.loads(json.dumps(split.to_json(ds)))
    assert data["fingerprint"] == ds.fingerprint and data["seed"] == 1
    assert len(data["train"]) + len(data["val"]) + len(data["test"]) == len(ds)
    assert data["test"][0] in ds.paths
    assert data["counts"]["test"] == {"class0": 2, "class1": 2}
    again = Split.from_json(data, ds)
    assert all(torch.equal(again.part(p), split.part(p)) for p in ("train", "val", "test"))
    other = synthetic_dataset([12, 13])
    with pytest.raises(DataError, match="not synthetic"):
        Split.from_json(data, other)
    with pytest.raises(DataError, match="make a new split"):
        split.to_json(other)


def test_official_subsets_and_groups():
    # 4 images x 3 samples each (e.g. patches); images 0,1 official train, 2,3 official test, per class
    counts = [12, 12]
    groups = [i // 3 for i in range(24)]
    subsets = ["train" if (i // 3) % 4 < 2 else "test" for i in range(24)]
    ds = synthetic_dataset(counts, groups=groups, subsets=subsets)
    split = make_split(ds, val=0.5)
    check_split(split, ds)
    assert set(split.test.tolist()) == {i for i, s in enumerate(ds.subsets) if s == "test"}
    assert len(split.val) == 6 and split.policy["test"] == "official"
    free = make_split(ds, use_subsets=False, test=0.25, val=0)
    check_split(free, ds)


def test_bad_parameters_are_data_errors():
    ds = synthetic_dataset([5, 5])
    with pytest.raises(DataError, match="test"):
        make_split(ds, test=1.5)
    with pytest.raises(DataError, match="keep some for training"):
        make_split(ds, test=4, val=1)
    with pytest.raises(DataError, match="at least 3"):
        make_split(synthetic_dataset([2, 5]))
