"""``lw``: Huang et al.'s (2020) LW backbone (their Table 2), generalised.

Table 2: 3x3 conv 32 /2, 1x1 conv 16, LW bottlenecks (24, /2, x2), (32, /2, x2), (32, /2, x1),
(64, /2, x4), 1x1 conv 320, then global-average-pool and a linear classifier. Channels scale
with the width multiplier, except the last 1x1 conv, which is kept at 320 when the multiplier
is below 1 ("to maintain the accuracy performance"). The search draws per-stage width, repeats
and stride, the multiplier and the last conv's width.
"""

from __future__ import annotations

from typing import Any

from defect_nas.core.spec import LW, ArchSpec, Conv, Head, out_size
from defect_nas.search_spaces.base import Space, Task, register, stride_choice

#: Huang et al., Table 2: (out channels, stride, repeats) of the LW-bottleneck stages.
TABLE2_STAGES = ((24, 2, 2), (32, 2, 2), (32, 2, 1), (64, 2, 4))
TABLE2_LAST = 320
MULTIPLIERS = [0.35, 0.5, 0.75, 1.0]


def scaled(channels: int, multiplier: float, divisor: int = 8) -> int:
    """MobileNet's rounding of ``channels * multiplier``: nearest multiple of ``divisor``,
    at least ``divisor``, and never more than 10% below the exact value."""
    v = channels * multiplier
    r = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return r + divisor if r < 0.9 * v else r


def lw_backbone(
    task: Task, multiplier: float, stages: tuple[tuple[int, int, int], ...], last: int, name: str
) -> ArchSpec:
    stem = (Conv(scaled(32, multiplier), 3, 2, act="relu6"), Conv(scaled(16, multiplier), 1, 1, act="relu6"))
    body = tuple(
        tuple(LW(scaled(c, multiplier), s if i == 0 else 1) for i in range(n)) for c, s, n in stages
    )
    last_w = last if multiplier < 1 else scaled(last, multiplier)
    body += ((Conv(last_w, 1, 1, act="relu6"),),)
    return ArchSpec(task.in_channels, task.input_size, task.num_classes, stem, body, Head(), name)


class LWSpace(Space):
    name = "lw"
    description = "Huang et al.'s LW-bottleneck backbone: per-stage width, repeats, stride; width multiplier"

    def backbone(self, trial: Any, task: Task) -> ArchSpec:
        mult = trial.suggest_categorical("multiplier", MULTIPLIERS)
        last = trial.suggest_categorical("last_width", [160, 320, 640])
        size = out_size(task.input_size, 2)
        stages = []
        for s in range(trial.suggest_int("stages", 2, 5)):
            width = trial.suggest_categorical(f"s{s}_width", [16, 24, 32, 48, 64, 96, 128])
            repeats = trial.suggest_int(f"s{s}_repeats", 1, 4)
            stride = stride_choice(trial, f"s{s}_stride", size)
            size = out_size(size, stride)
            stages.append((width, stride, repeats))
        return lw_backbone(task, mult, tuple(stages), last, "lw")

    def backbone_prototypes(self, task: Task) -> dict[str, ArchSpec]:
        return {
            f"lw@{m}": lw_backbone(task, m, _fit_strides(TABLE2_STAGES, task.input_size), TABLE2_LAST, f"lw@{m}")
            for m in (0.35, 0.75)
        }


def _fit_strides(stages: tuple[tuple[int, int, int], ...], input_size: int) -> tuple[tuple[int, int, int], ...]:
    """Table 2's strides, dropped to 1 where a small input would shrink the map below 2 pixels."""
    size, out = out_size(input_size, 2), []
    for c, s, n in stages:
        s = s if out_size(size, s) >= 2 else 1
        size = out_size(size, s)
        out.append((c, s, n))
    return tuple(out)


register(LWSpace())
