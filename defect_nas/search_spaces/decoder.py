"""Huang et al.'s segmentation decoder as a torch module (``core.spec.Decoder`` describes it; ``core.cost``
counts it, ``tests/test_segment_cost.py`` holds the two equal)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defect_nas.core.spec import Decoder


def _pointwise(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _atrous_separable(cin: int, cout: int, rate: int) -> nn.Sequential:
    """Depthwise 3x3 at ``rate`` (padding = rate keeps the map's size), then pointwise: the ASPP branch
    Huang et al. build from depthwise-separable convs instead of DeepLab's full 3x3s."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=rate, dilation=rate, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(inplace=True), _pointwise(cin, cout))


class DecoderHead(nn.Module):
    """ASPP -> (upsample, concat the reduced shortcut, fuse) -> per-pixel classifier -> input size."""

    def __init__(self, d: Decoder, cin: int, tap_channels: int | None, classes: int):
        super().__init__()
        self.branches = nn.ModuleList([_pointwise(cin, d.width)] + [_atrous_separable(cin, d.width, r)
                                                                    for r in d.rates])
        self.project = _pointwise((1 + len(d.rates)) * d.width, d.width)
        self.skip = None if tap_channels is None else _pointwise(tap_channels, d.skip)
        self.fuse = None if tap_channels is None else _pointwise(d.width + d.skip, d.width)
        self.classify = nn.Conv2d(d.width, classes, 1)

    def forward(self, x: torch.Tensor, tapped: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        y = self.project(torch.cat([b(x) for b in self.branches], 1))
        if self.skip is not None and self.fuse is not None and tapped is not None:
            y = F.interpolate(y, size=tapped.shape[-2:], mode="bilinear", align_corners=False)
            y = self.fuse(torch.cat([y, self.skip(tapped)], 1))
        return F.interpolate(self.classify(y), size=size, mode="bilinear", align_corners=False)
