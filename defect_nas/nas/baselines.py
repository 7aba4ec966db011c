"""Reference networks trained beside the winner with the same trainer, by name (``--baselines``).

Registered: ResNet-50, MobileNetV2@0.35 and ShuffleNetV2@0.5 (torchvision, first conv adapted to the
input channels).
Besides the registry, ``prototypes`` names every prototype of the searched spaces (``SPACE/NAME``)
and ``none`` names nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from defect_nas.core.errors import DefectNasError
from defect_nas.core.registry import Registry
from defect_nas.search_spaces.base import Task, get_space
from defect_nas.search_spaces.build import build

BASELINES: Registry[Callable[[int, int], torch.nn.Module]] = Registry("baseline", "--baselines")


@BASELINES.register("resnet50")
def _resnet50(in_channels: int, classes: int) -> torch.nn.Module:
    import torchvision  # here, not at the top: the CLI lists the names without paying for the import

    m = torchvision.models.resnet50(num_classes=classes)
    m.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return m


@BASELINES.register("mobilenetv2-0.35")
def _mobilenetv2_035(in_channels: int, classes: int) -> torch.nn.Module:
    import torchvision

    m = torchvision.models.mobilenet_v2(num_classes=classes, width_mult=0.35)
    old = m.features[0][0]
    m.features[0][0] = torch.nn.Conv2d(in_channels, old.out_channels, 3, 2, 1, bias=False)
    return m


@BASELINES.register("shufflenetv2-0.5")
def _shufflenetv2_05(in_channels: int, classes: int) -> torch.nn.Module:
    import torchvision

    m = torchvision.models.shufflenet_v2_x0_5(num_classes=classes)
    old = m.conv1[0]
    m.conv1[0] = torch.nn.Conv2d(in_channels, old.out_channels, 3, 2, 1, bias=False)
    return m


def baseline_choices() -> tuple[str, ...]:
    return (*BASELINES.names(), "prototypes", "none")


def baseline_model(name: str, in_channels: int, classes: int, task: Task | None = None) -> torch.nn.Module:
    """A registered baseline, or ``SPACE/PROTOTYPE`` built for ``task``."""
    if name in BASELINES:
        return BASELINES.get(name)(in_channels, classes)
    space_name, _, proto = name.partition("/")
    if task is None:
        raise DefectNasError(f"baseline {name!r} is a prototype: it needs the task to be built")
    return build(get_space(space_name).prototypes(task)[proto])


def baseline_costs(model: torch.nn.Module, in_channels: int, size: int) -> dict[str, int]:
    from defect_nas.measure.flops import fvcore_macs

    return {"macs": fvcore_macs(model, in_channels, size), "params": sum(p.numel() for p in model.parameters())}


def baseline_names(requested: tuple[str, ...], spaces: tuple[str, ...], task: Task | None) -> list[str]:
    """The baselines to train: ``prototypes`` expands to every prototype of the searched spaces
    (needs ``task``; without it, names are only checked); ``none`` is nothing."""
    out = []
    for b in requested:
        if b == "prototypes":
            if task is not None:
                out += [f"{s}/{p}" for s in spaces for p in get_space(s).prototypes(task)]
        elif b != "none":
            if "/" in b:  # one prototype, SPACE/NAME
                get_space(b.partition("/")[0])
            elif b not in BASELINES:
                raise DefectNasError(f"unknown baseline {b!r}: choose --baselines {', '.join(baseline_choices())}"
                                     " or a prototype as SPACE/NAME")
            out.append(b)
    return out
