"""Reference networks trained beside the winner with the same trainer: ResNet-50, MobileNetV2@0.35,
and the search spaces' prototypes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from defect_nas.evaluators.flops import fvcore_macs
from defect_nas.search_spaces.build import build

if TYPE_CHECKING:
    from defect_nas.nas.engine import SearchContext


def baseline_model(name: str, in_channels: int, classes: int, ctx: SearchContext | None = None) -> torch.nn.Module:
    import torchvision

    if name == "resnet50":
        m = torchvision.models.resnet50(num_classes=classes)
        m.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return m
    if name == "mobilenetv2-0.35":
        m = torchvision.models.mobilenet_v2(num_classes=classes, width_mult=0.35)
        old = m.features[0][0]
        m.features[0][0] = torch.nn.Conv2d(in_channels, old.out_channels, 3, 2, 1, bias=False)
        return m
    space_name, _, proto = name.partition("/")
    from defect_nas.search_spaces.base import get_space

    assert ctx is not None
    return build(get_space(space_name).prototypes(ctx.task)[proto])


def baseline_costs(model: torch.nn.Module, in_channels: int, size: int) -> dict[str, int]:
    return {"macs": fvcore_macs(model, in_channels, size), "params": sum(p.numel() for p in model.parameters())}


def baseline_names(requested: tuple[str, ...], spaces: tuple[str, ...], task) -> list[str]:
    """``prototypes`` expands to every prototype of the searched spaces; ``none`` is nothing."""
    from defect_nas.search_spaces.base import get_space

    out = []
    for b in requested:
        if b == "prototypes":
            out += [f"{s}/{p}" for s in spaces for p in get_space(s).prototypes(task)]
        elif b != "none":
            out.append(b)
    return out
