"""The one builder: ArchSpec -> nn.Module. It knows blocks, never search spaces."""

from __future__ import annotations

import torch
from torch import nn

from defect_nas.core.spec import (
    GLOBAL_POOLS,
    LW,
    ArchSpec,
    Basic,
    Block,
    Bottleneck,
    Conv,
    feature_sizes,
    tap_point,
    validate,
)
from defect_nas.search_spaces.blocks import ConvBNAct, LWBottleneck, basic_block, bottleneck_block
from defect_nas.search_spaces.decoder import DecoderHead


def build_block(b: Block, cin: int) -> nn.Module:
    if isinstance(b, Conv):
        return ConvBNAct(cin, b.out, b.kernel, b.stride, b.act, b.norm, b.pool)
    if isinstance(b, Basic):
        return basic_block(cin, b.out, b.kernel, b.stride)
    if isinstance(b, Bottleneck):
        return bottleneck_block(cin, b.out, b.kernel, b.stride, b.mid)
    if isinstance(b, LW):
        return LWBottleneck(cin, b.out, b.stride)
    raise TypeError(f"unknown block {b!r}")


class Network(nn.Module):
    """features (stem + stages) -> head (logits [N, classes]) or decoder (per-pixel logits [N, classes, H, W]);
    input is float [N, in_channels, H, W] in [0, 1]."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        validate(spec)
        self.spec = spec
        cin, layers = spec.in_channels, []
        for _, b in spec.blocks():
            layers.append(build_block(b, cin))
            cin = b.out
        self.features = nn.Sequential(*layers)
        self.tap = tap_point(spec)
        if spec.decoder is not None:  # segmentation: per-pixel logits at the input's size
            tap_channels = None if self.tap is None else spec.blocks()[self.tap][1].out
            self.decoder = DecoderHead(spec.decoder, cin, tap_channels, spec.num_classes)
            _init(self)
            return
        head: list[nn.Module] = []
        if spec.head.pool in GLOBAL_POOLS:
            pool = nn.AdaptiveAvgPool2d(1) if spec.head.pool == "gap" else nn.AdaptiveMaxPool2d(1)
            head += [pool, nn.Flatten()]
            width = cin
        else:
            side = feature_sizes(spec, spec.input_size)[-1]
            head.append(nn.Flatten())
            width = cin * side * side
        for hidden in spec.head.fc:
            head += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            if spec.head.dropout:
                head.append(nn.Dropout(spec.head.dropout))
            width = hidden
        head.append(nn.Linear(width, spec.num_classes))
        self.head = nn.Sequential(*head)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.decoder is None:
            return self.head(self.features(x))
        size, tapped = x.shape[-2:], None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.tap:
                tapped = x
        return self.decoder(x, tapped, size)


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(spec: ArchSpec) -> Network:
    """Build the network an ArchSpec describes (weights freshly initialised)."""
    return Network(spec)
