"""The analytic cost model equals fvcore's count and torch's parameter count exactly."""

import json
import math
import random

import pytest
import torch

from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost, macs, params
from defect_nas.core.errors import Infeasible, SpecError
from defect_nas.core.spec import ArchSpec, Conv, Head
from defect_nas.measure.flops import fvcore_macs, ptflops_macs
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces
from defect_nas.search_spaces.build import build

SPACES = sorted(all_spaces())


def random_specs(space: str, size: int, n: int):
    """n random proposals, each fitted to a random budget of 2M..40M MACs: wide and narrow,
    shallow and deep networks, small enough that tracing them with fvcore stays quick."""
    rng = random.Random(f"{space}-{size}")
    made = 0
    while made < n:
        spec = all_spaces()[space].propose(RandomTrial(rng), Task(rng.choice([1, 3]), size, rng.randint(2, 12)))
        try:
            yield fit(spec, Budget(math.exp(rng.uniform(math.log(2e6), math.log(40e6))), 0.3))
        except Infeasible:
            continue
        made += 1


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("size", [64, 200, 224])
def test_analytic_cost_equals_fvcore_and_numel_on_40_random_specs(space, size):
    for spec in random_specs(space, size, 40):  # 360 specs over spaces x sizes (100 each cost CI 70 s more)
        model = build(spec)
        assert params(spec) == sum(p.numel() for p in model.parameters()), spec.to_json()
        assert macs(spec) == fvcore_macs(model, spec.in_channels, size), spec.to_json()


@pytest.mark.parametrize("space", SPACES)
def test_cost_at_another_input_size_matches_fvcore(space):
    for spec in all_spaces()[space].prototypes(Task(1, 200, 6)).values():
        if spec.head.pool == "gap":
            assert macs(spec, 96) == fvcore_macs(build(spec), 1, 96)
        else:
            with pytest.raises(SpecError, match="flatten head is tied"):
                macs(spec, 96)


def test_ptflops_counts_more_than_conv_and_linear():
    spec = all_spaces()["residual"].prototypes(Task())["resnet-proto"]
    model = build(spec)
    pt = ptflops_macs(model, 1, 200)
    # ptflops' pytorch backend adds BN, ReLU, pooling and biases: strictly more, by a few percent
    assert macs(spec) < pt < 1.1 * macs(spec)


# ---- the prototypes cost what the papers imply ------------------------------------------------


def test_kim_student_has_the_papers_858380_params():
    """Kim et al. report 858,380 params for the (4,8,16,4,4) student on 224x224 RGB, 12 DAGM classes."""
    protos = all_spaces()["vgg-student"].prototypes(Task(3, 224, 12))
    assert params(protos["vgg-student-4-8-16-4-4"]) == 858_380


def test_lw_035_matches_huang_on_neu():
    """Huang et al. Table 4 (NEU, 200x200): ours@0.35 has 0.04M params and 28M TensorFlow FLOPs,
    which count about 2 x MACs (plus BN and activations)."""
    spec = all_spaces()["lw"].prototypes(Task(3, 200, 6))["lw@0.35"]
    c = cost(spec)
    assert round(c.params / 1e6, 2) == 0.04
    assert 0.85 * 28e6 <= 2 * c.macs <= 28e6


def test_lw_keeps_the_last_conv_at_320_below_multiplier_one():
    protos = all_spaces()["lw"].prototypes(Task())
    for name in ("lw@0.35", "lw@0.75"):
        last = protos[name].stages[-1][-1]
        assert isinstance(last, Conv) and last.out == 320 and last.kernel == 1


def test_cost_of_a_hand_computed_network():
    # conv3x3 1->8 stride 2 on 32x32 -> 16x16: 8*1*9*256 MACs, 72 weights + 16 BN; GAP + linear 8->3
    spec = ArchSpec(1, 32, 3, (Conv(8, 3, 2),), (), Head())
    assert cost(spec).macs == 8 * 9 * 256 + 8 * 3
    assert cost(spec).params == 72 + 16 + 8 * 3 + 3
    with torch.no_grad():
        assert build(spec)(torch.zeros(1, 1, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("space", SPACES)
def test_a_net_fitted_to_1m_macs_at_200px_is_counted_exactly(space):
    """1M MACs at 200 px needs the fit's last resort (a pooled or smaller first layer): still exact."""
    fitted = []
    for seed in range(20):
        try:
            fitted.append(fit(all_spaces()[space].propose(RandomTrial(seed), Task(1, 200, 6)), Budget(1e6)))
        except Infeasible:
            continue
    assert fitted
    for spec in fitted[:3]:
        assert Budget(1e6).contains(macs(spec)) and macs(spec) == fvcore_macs(build(spec), 1, 200), spec.to_json()


def test_a_max_pooled_head_costs_what_an_averaged_one_does_and_keeps_a_one_pixel_defect():
    """``gmp`` (global max pool) is the head for defects of a few pixels: same MACs as ``gap``, equal
    to fvcore's count, and a single hot pixel moves its pooled feature as much as a full map would."""
    import dataclasses

    spec = ArchSpec(1, 64, 3, (Conv(8, 3, 2),), (), Head("gmp"))
    assert macs(spec) == macs(dataclasses.replace(spec, head=Head("gap"))) == fvcore_macs(build(spec), 1, 64)
    pool = build(spec).head[0]
    x = torch.zeros(1, 8, 32, 32)
    x[0, :, 31, 0] = 1.0  # one pixel in a corner
    assert pool(x).flatten().tolist() == [1.0] * 8
    with pytest.raises(SpecError, match="head.pool"):
        ArchSpec.from_dict({**json.loads(spec.to_json()), "head": {"pool": "max"}})
