"""The building blocks as torch modules: conv-BN-act(-pool), ResNet basic/bottleneck, LW bottleneck.

Each module mirrors one ArchSpec block type one-to-one so that ``core.cost`` can count
it analytically; ``tests/test_cost.py`` holds the two to each other exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defect_nas.core.spec import LW_KERNELS


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(inplace=True), "relu6": nn.ReLU6(inplace=True), "none": nn.Identity()}[name]


class StridedPointwise(nn.Conv2d):
    """A 1x1 conv with stride s, computed as "take every s-th pixel, then a 1x1 stride-1 conv":
    the same weights, output and MACs. Why: torch 2.14's CPU backward of a strided 1x1 conv on
    channels_last input with few input channels (4 or 8 at 56-112 px) corrupts the heap and kills
    the process (reproduced by ``tests/test_build.py``); the subsampled form takes another kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.conv2d(x[:, :, :: s[0], :: s[1]], self.weight, self.bias)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Bias-free odd-kernel 'same' conv followed by BatchNorm."""
    cls = StridedPointwise if (kernel == 1 and stride > 1 and groups == 1) else nn.Conv2d
    return nn.Sequential(
        cls(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class ConvBNAct(nn.Sequential):
    """conv (+BN) + activation (+max-pool); without BN the conv carries a bias (Kim's student)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, norm: bool, pool: int):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(activation(act))
        if pool == 2:
            layers.append(nn.MaxPool2d(2, 2))
        elif pool == 3:
            layers.append(nn.MaxPool2d(3, 2, 1))
        super().__init__(*layers)


class Residual(nn.Module):
    """Adds a shortcut (identity, or 1x1 conv-BN when the shape changes) to a body, then ReLU."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = body
        self.shortcut = nn.Identity() if (stride == 1 and cin == cout) else conv_bn(cin, cout, 1, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def basic_block(cin: int, cout: int, kernel: int, stride: int) -> Residual:
    body = nn.Sequential(conv_bn(cin, cout, kernel, stride), nn.ReLU(inplace=True), conv_bn(cout, cout, kernel))
    return Residual(body, cin, cout, stride)


def bottleneck_block(cin: int, cout: int, kernel: int, stride: int, mid: int) -> Residual:
    body = nn.Sequential(
        conv_bn(cin, mid, 1), nn.ReLU(inplace=True),
        conv_bn(mid, mid, kernel, stride), nn.ReLU(inplace=True),
        conv_bn(mid, cout, 1),
    )
    return Residual(body, cin, cout, stride)


def same_pad(k: int) -> tuple[int, int]:
    """(before, after) zero padding that keeps ceil(size/stride) for any kernel, odd or even;
    the extra pixel of an even kernel goes after, as TensorFlow's 'SAME' does."""
    return (k - 1) // 2, (k - 1) - (k - 1) // 2


class DepthwisePath(nn.Sequential):
    """One (kh x kw) depthwise conv + BN, padded so every path has the same output size."""

    def __init__(self, channels: int, kh: int, kw: int, stride: int):
        top, bottom = same_pad(kh)
        left, right = same_pad(kw)
        layers: list[nn.Module] = []
        if (top, left) != (bottom, right):
            layers.append(nn.ZeroPad2d((left, right, top, bottom)))
            padding: tuple[int, int] = (0, 0)
        else:
            padding = (top, left)
        layers += [
            nn.Conv2d(channels, channels, (kh, kw), stride, padding, groups=channels, bias=False),
            nn.BatchNorm2d(channels),
        ]
        super().__init__(*layers)


class LWBottleneck(nn.Module):
    """Huang et al. (2020) LW bottleneck.

    Eight parallel depthwise convs (5x1, 1x5, 3x1, 1x3, 2x1, 1x2, 2x2, 3x3) with the stride,
    concatenated (8 x cin channels), ReLU6 after the depthwise part only, then a linear 1x1
    projection; residual when input and output shapes match.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.paths = nn.ModuleList(DepthwisePath(cin, kh, kw, stride) for kh, kw in LW_KERNELS)
        self.act = nn.ReLU6(inplace=True)
        self.project = conv_bn(len(LW_KERNELS) * cin, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.act(torch.cat([p(x) for p in self.paths], dim=1)))
        return x + y if self.residual else y
