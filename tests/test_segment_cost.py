"""Segmentation specs (a backbone with Huang et al.'s decoder): exact analytic cost, budget fit, JSON."""

import json
import math
import random

import pytest
import torch

from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost, macs, params
from defect_nas.core.errors import Infeasible, SpecError
from defect_nas.core.spec import ArchSpec
from defect_nas.measure.flops import fvcore_macs
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces
from defect_nas.search_spaces.build import build

SPACES = sorted(all_spaces())


def random_segmenters(space: str, size: int, n: int):
    """n random backbone + decoder draws of ``space``, each fitted to a random 5M..80M-MAC band at 200 px
    (scaled with the pixels at other sizes; the prototypes are checked at 96 px too)."""
    rng = random.Random(f"seg-{space}-{size}")
    scale = (size / 200) ** 2
    made = 0
    while made < n:
        task = Task(rng.choice([1, 3]), size, rng.randint(2, 5), segment=True)
        spec = all_spaces()[space].propose(RandomTrial(rng), task)
        try:
            yield fit(spec, Budget(scale * math.exp(rng.uniform(math.log(5e6), math.log(80e6))), 0.3))
        except Infeasible:
            continue
        made += 1


@pytest.mark.parametrize("space", SPACES)
def test_analytic_segmenter_cost_equals_fvcore_and_numel_on_random_specs(space, size=200):
    seen_taps = set()
    for spec in random_segmenters(space, size, 6):
        model = build(spec)
        assert params(spec) == sum(p.numel() for p in model.parameters()), spec.to_json()
        assert macs(spec) == fvcore_macs(model, spec.in_channels, size), spec.to_json()
        seen_taps.add(spec.decoder.tap >= 0)
    # the shortcut's convs were among the counted (vgg-student is one stage: no stage before the last to tap)
    assert (True in seen_taps) == (space != "vgg-student")


@pytest.mark.parametrize("space", SPACES)
def test_every_prototype_segments_at_the_inputs_size_and_round_trips_through_json(space):
    for i, (name, spec) in enumerate(all_spaces()[space].prototypes(Task(1, 200, 4, segment=True)).items()):
        assert spec.segments and spec.decoder.rates == (6, 12, 18), name
        again = ArchSpec.from_json(spec.to_json())
        assert again == spec and again.digest() == spec.digest()
        with torch.no_grad():
            out = build(spec).eval()(torch.rand(2, 1, 200, 200))
        assert out.shape == (2, 4, 200, 200)  # per-pixel logits for every mask class
        if i == 0:
            assert macs(spec, 96) == fvcore_macs(build(spec), 1, 96)  # and at another size


def test_budget_fit_scales_the_decoder_with_its_backbone_into_the_band():
    spec = all_spaces()["lw"].prototypes(Task(1, 200, 4, segment=True))["lw@0.35"]
    for target in (20e6, 60e6):
        fitted = fit(spec, Budget(target, 0.05))
        assert Budget(target, 0.05).contains(cost(fitted).macs) and fitted.decoder is not None
    small, large = fit(spec, Budget(20e6, 0.05)), fit(spec, Budget(60e6, 0.05))
    assert small.decoder.width < large.decoder.width  # the decoder is not a fixed tax on a small budget


@pytest.mark.parametrize("decoder, message", [
    ({"rates": [0]}, "decoder.rates"),
    ({"rates": "6,12"}, "decoder.rates"),
    ({"tap": 9}, "decoder.tap"),
    ({"width": 0}, "decoder.width"),
    ({"colour": 1}, "unknown key 'colour'"),
])
def test_a_bad_decoder_field_is_named(decoder, message):
    spec = all_spaces()["residual"].prototypes(Task(1, 64, 3, segment=True))["resnet-proto"]
    d = json.loads(spec.to_json())
    d["decoder"].update(decoder)
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(d)


def test_a_decoder_replaces_the_head_and_a_spec_with_both_is_refused():
    spec = all_spaces()["residual"].prototypes(Task(1, 64, 3, segment=True))["resnet-proto"]
    d = json.loads(spec.to_json())
    d["head"]["fc"] = [64]
    with pytest.raises(SpecError, match="decoder replaces the classifier head"):
        ArchSpec.from_dict(d)
