"""``residual``: shallow, heterogeneous residual networks in the spirit of TinyDefectNet.

TinyDefectNet's generator started from a residual design prototype (ResNet principles) and
produced a shallow macro-architecture with heterogeneous stages; here every stage draws its own
depth, width, kernel, stride and block form (basic or bottleneck).
"""

from __future__ import annotations

from typing import Any

from defect_nas.core.spec import ArchSpec, Basic, Bottleneck, Conv, Head, out_size, pool_size
from defect_nas.search_spaces.base import Space, Task, register, stride_choice

WIDTHS = [16, 24, 32, 48, 64, 96, 128, 192, 256]


class ResidualSpace(Space):
    name = "residual"
    description = "shallow heterogeneous ResNet-style stages (depth, width, kernel, stride, basic/bottleneck)"

    def backbone(self, trial: Any, task: Task) -> ArchSpec:
        stem_k = trial.suggest_categorical("stem_kernel", [3, 5, 7])
        stem_w = trial.suggest_categorical("stem_width", [16, 24, 32, 48, 64])
        stem_pool = trial.suggest_categorical("stem_pool", [0, 3])
        size = out_size(task.input_size, 2)
        stem_pool = stem_pool if pool_size(size, stem_pool) >= 4 else 0
        size = pool_size(size, stem_pool)
        stages = []
        for s in range(trial.suggest_int("stages", 2, 4)):
            depth = trial.suggest_int(f"s{s}_depth", 1, 3)
            width = trial.suggest_categorical(f"s{s}_width", WIDTHS)
            kernel = trial.suggest_categorical(f"s{s}_kernel", [3, 5])
            stride = stride_choice(trial, f"s{s}_stride", size)
            size = out_size(size, stride)
            form = trial.suggest_categorical(f"s{s}_block", ["basic", "bottleneck"])
            if form == "bottleneck":
                exp = trial.suggest_categorical(f"s{s}_expansion", [2, 4])
                blocks = [Bottleneck(width, kernel, stride if i == 0 else 1, exp) for i in range(depth)]
            else:
                blocks = [Basic(width, kernel, stride if i == 0 else 1) for i in range(depth)]
            stages.append(tuple(blocks))
        stem = (Conv(stem_w, stem_k, 2, pool=stem_pool),)
        return ArchSpec(task.in_channels, task.input_size, task.num_classes, stem, tuple(stages), Head(), "residual")

    def backbone_prototypes(self, task: Task) -> dict[str, ArchSpec]:
        # ResNet principles at half the width and one basic block per stage (shallow, as
        # TinyDefectNet's search favoured): 7x7/2 stem + 3x3/2 max-pool, widths 32-256.
        stem = (Conv(32, 7, 2, pool=3),)
        stages = ((Basic(32),), (Basic(64, stride=2),), (Basic(128, stride=2),), (Basic(256, stride=2),))
        proto = ArchSpec(task.in_channels, task.input_size, task.num_classes, stem, stages, Head(), "resnet-proto")
        return {"resnet-proto": proto}


register(ResidualSpace())
