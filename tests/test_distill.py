"""Distillation losses against hand-computed values and their defining properties."""

import math

import pytest
import torch
import torch.nn.functional as F

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators.distill import DistillLoss, kd_kl, kd_l2

LN3 = math.log(3.0)


def test_l2_hand_value():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # squared norms 5 and 2 -> mean 3.5 -> half = 1.75
    assert kd_l2(s, t).item() == pytest.approx(1.75)


def test_kl_hand_value_with_t2_scaling():
    s = torch.tensor([[0.0, 0.0]])  # p_s = (1/2, 1/2)
    t = torch.tensor([[2 * LN3, 0.0]])  # at T=2: p_t = (3/4, 1/4)
    expected = 4.0 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert kd_kl(s, t, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_kl_scales_with_t_squared():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    for temp in (1.0, 2.0, 4.0):
        soft = kd_kl(s / temp, t / temp, 1.0)
        assert kd_kl(s, t, temp).item() == pytest.approx(temp**2 * soft.item(), rel=1e-5)


def test_ce_hand_values_smoothing_and_weights():
    logits = torch.tensor([[LN3, 0.0]])  # p = (3/4, 1/4)
    y = torch.tensor([0])
    plain = DistillLoss()(logits, y)
    assert plain.item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    smooth = DistillLoss(label_smoothing=0.2)(logits, y)
    expected = 0.8 * math.log(4 / 3) + 0.1 * (math.log(4 / 3) + math.log(4.0))
    assert smooth.item() == pytest.approx(expected, rel=1e-6)
    batch = torch.tensor([[LN3, 0.0], [LN3, 0.0]])
    weighted = DistillLoss(class_weights=[1.0, 3.0])(batch, torch.tensor([0, 1]))
    assert weighted.item() == pytest.approx((math.log(4 / 3) + 3 * math.log(4.0)) / 4, rel=1e-6)


def test_mix_hand_value():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([1, 0])
    ce = (math.log(1 + math.exp(-1.0)) + math.log(2.0)) / 2
    loss = DistillLoss("l2", alpha=0.3)
    parts = loss.parts(s, y, t)
    assert parts.kd.item() == pytest.approx(1.75)
    assert parts.ce.item() == pytest.approx(ce, rel=1e-6)
    assert loss(s, y, t).item() == pytest.approx(0.3 * 1.75 + 0.7 * ce, rel=1e-6)


@pytest.mark.parametrize("kind", ["l2", "kl", "none"])
def test_alpha_zero_is_plain_ce(kind):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    w = [1.0, 2.0, 0.5, 1.5]
    loss = DistillLoss(kind, alpha=0.0, temperature=3.0, label_smoothing=0.1, class_weights=w)
    ref = F.cross_entropy(s, y, weight=torch.tensor(w), label_smoothing=0.1)
    assert torch.equal(loss(s, y, t), ref)
    assert torch.equal(loss(s, y), ref)  # no teacher needed at alpha=0
    assert not loss.needs_teacher


@pytest.mark.parametrize("kind", ["l2", "kl"])
def test_gradients_reach_student_not_teacher(kind):
    g = torch.Generator().manual_seed(2)
    s = torch.randn(3, 4, generator=g, requires_grad=True)
    t = torch.randn(3, 4, generator=g, requires_grad=True)
    loss = DistillLoss(kind, alpha=0.5, temperature=2.0)
    loss(s, torch.tensor([0, 1, 2]), t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_zero_when_student_matches_teacher():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(5, 3, generator=g)
    s = t.clone().requires_grad_(True)
    assert kd_l2(s, t).item() == 0.0
    # same softmax: logits shifted by a per-row constant
    shifted = (t + torch.tensor([[1.0], [-2.0], [0.5], [3.0], [0.0]])).requires_grad_(True)
    assert kd_kl(shifted, t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_l2(shifted, t).item() > 0  # L2 does see the shift
    # and the KD gradient is zero at the optimum
    kd_kl(shifted, t, 4.0).backward()
    assert shifted.grad.abs().max().item() < 1e-6


def test_alpha_one_is_pure_kd():
    s, t = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    assert DistillLoss("l2", alpha=1.0)(s, torch.tensor([0, 1]), t).item() == pytest.approx(1.75)


def test_class_weights_follow_module_dtype_and_device():
    loss = DistillLoss(class_weights=[1.0, 2.0]).double()
    out = loss(torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0, 1]))
    assert out.dtype == torch.float64
    assert out.item() == pytest.approx(math.log(2.0))


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(kind="mse"), "kind"),
        (dict(kind="l2", alpha=1.5), "alpha"),
        (dict(kind="none", alpha=0.5), "alpha = 0"),
        (dict(kind="kl", alpha=0.5, temperature=0.0), "temperature"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(class_weights=[1.0, -1.0]), "class_weights"),
        (dict(class_weights=[]), "class_weights"),
    ],
)
def test_config_errors(kwargs, msg):
    with pytest.raises(DefectNasError, match=msg):
        DistillLoss(**kwargs)


def test_call_errors():
    s, y = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(DefectNasError, match="needs teacher"):
        DistillLoss("kl", alpha=0.5)(s, y)
    with pytest.raises(DefectNasError, match="do not match"):
        DistillLoss("l2", alpha=0.5)(s, y, torch.zeros(2, 4))
    with pytest.raises(DefectNasError, match="3 classes"):
        DistillLoss(class_weights=[1.0, 1.0])(s, y)
    with pytest.raises(DefectNasError, match="labels"):
        DistillLoss()(s, torch.tensor([0]))
