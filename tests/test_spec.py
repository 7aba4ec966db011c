"""ArchSpec: JSON round trip and validation that names the offending field."""

import json

import pytest

from defect_nas.core.errors import SpecError
from defect_nas.core.spec import LW, ArchSpec, Basic, Bottleneck, Conv, Head, load_spec
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces

SPACES = sorted(all_spaces())


def small_spec(**overrides) -> dict:
    spec = ArchSpec(1, 64, 6, (Conv(8, 3, 2),), ((Basic(8), Bottleneck(16, 3, 2, 2)), (LW(16, 2),)), Head())
    d = spec.to_dict()
    d.update(overrides)
    return d


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("size", [32, 64, 200, 224, 512])
def test_json_round_trip_of_random_specs(space, size):
    for seed in range(20):
        spec = all_spaces()[space].propose(RandomTrial(seed), Task(1, size, 6))
        assert ArchSpec.from_json(spec.to_json()) == spec
        assert ArchSpec.from_json(spec.to_json()).digest() == spec.digest()


def test_digest_ignores_name_but_not_architecture():
    a = ArchSpec.from_dict(small_spec())
    assert ArchSpec.from_dict(small_spec(name="other")).digest() == a.digest()
    assert ArchSpec.from_dict(small_spec(num_classes=7)).digest() != a.digest()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["stem"][0].update(widht=8), "stem[0]: unknown key 'widht'"),
        (lambda d: d.update(in_channels="1"), "spec.in_channels"),
        (lambda d: d.update(in_channels=2), "spec.in_channels"),
        (lambda d: d.update(input_size=0), "spec.input_size"),
        (lambda d: d.update(input_size=4096), "spec.input_size"),
        (lambda d: d["stages"][0][0].update(out=5000), "stages[0][0].out"),
        (lambda d: d["stages"][0][0].update(out=0), "stages[0][0].out"),
        (lambda d: d["stages"][0][0].update(out=8.5), "stages[0][0].out"),
        (lambda d: d["stages"][0][0].update(stride=3), "stages[0][0].stride"),
        (lambda d: d["stages"][0][0].update(kernel=4), "stages[0][0].kernel"),
        (lambda d: d["stages"][0][1].update(type="dense"), "stages[0][1].type"),
        (lambda d: d["stem"][0].update(act="gelu"), "stem[0].act"),
        (lambda d: d["stem"][0].update(norm="yes"), "stem[0].norm"),
        (lambda d: d.update(stages=[[{"type": "basic", "out": 8}]] * 65), "more than the maximum 64"),
        (lambda d: d.update(num_classes=1), "spec.num_classes"),
        (lambda d: d["head"].update(pool="max"), "head.pool"),
        (lambda d: d["head"].update(fc=[0]), "head.fc[0]"),
        (lambda d: d.pop("stages"), "spec.stages: missing"),
        (lambda d: d.update(stages=[[{"type": "basic", "out": 8, "stride": 2}]] * 7), "below 1 pixel"),
    ],
)
def test_invalid_specs_name_the_field(mutate, field):
    d = small_spec()
    mutate(d)
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        ArchSpec.from_json(json.dumps(d))


def test_stride_error_names_the_block_that_collapses_the_map():
    d = small_spec(input_size=32)
    d["stages"] = [[{"type": "basic", "out": 8, "stride": 2}] for _ in range(6)]
    with pytest.raises(SpecError, match=r"stages\[4\]\[0\]\.stride"):
        ArchSpec.from_dict(d)


def test_load_spec_reports_missing_and_bad_files(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="bad.json: spec is not valid JSON"):
        load_spec(str(bad))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(small_spec()))
    assert load_spec(str(good)) == ArchSpec.from_dict(small_spec())
