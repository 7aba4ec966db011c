"""Kim et al.'s per-layer analyses on tiny models with known answers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from defect_nas.inspection.analysis import analyze, conv_activations, disentanglement


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))


def test_layers_are_found_in_order_through_batch_norm():
    assert [(n, c.out_channels) for n, c, _ in conv_activations(tiny())] == [("0", 4), ("2", 6)]


def test_an_untrained_layer_has_weight_change_0_and_a_doubled_one_1():
    initial = tiny()
    trained = copy.deepcopy(initial)
    with torch.no_grad():
        trained[2].weight.mul_(2)
    rows = analyze(trained, torch.rand(12, 1, 8, 8), initial=initial)
    assert rows[0].weight_change == 0.0
    assert rows[1].weight_change == pytest.approx(1.0)
    assert analyze(trained, torch.rand(12, 1, 8, 8))[0].weight_change is None  # no initial weights given


def test_a_channel_forced_to_zero_counts_as_dead():
    model = tiny()
    with torch.no_grad():
        model[0].weight[1].zero_()
        model[0].bias[1] = -1.0  # ReLU(-1) = 0 everywhere: channel 1 of 4 is dead for every image
        model[0].bias[[0, 2, 3]] = 5.0  # the others are alive everywhere
    rows = analyze(model, torch.rand(10, 1, 8, 8))
    assert rows[0].sparsity == pytest.approx(0.25)


def test_points_on_a_line_are_flat_and_a_curled_spiral_is_not():
    t = torch.linspace(0, 1, 200)  # dense enough that neighbours lie along the curve, not across turns
    line = torch.stack([t, 2 * t, -t], 1)
    d_line, connected = disentanglement(line, k=5)
    assert d_line == pytest.approx(0.0, abs=1e-9) and connected == 1.0
    angle = 4 * math.pi * t  # two turns: far along the curve, near in space
    spiral = torch.stack([torch.cos(angle) * (1 + t), torch.sin(angle) * (1 + t), 0.05 * t], 1)
    d_spiral, _ = disentanglement(spiral, k=5)
    assert d_spiral > 0.5
