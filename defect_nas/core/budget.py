"""The compute budget and ``fit``: make any proposal feasible before it is trained.

TinyDefectNet's constraint is "FLOPs within 5% of 100M". ``fit`` keeps a proposal's shape
(relative widths, kernels, strides, block forms) and scales all widths by one multiplier,
found by bisection on the analytic MAC count; when widths alone cannot reach the band
(minimum or maximum width), it removes or adds stride-1 blocks and tries again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError, Infeasible, SpecError
from defect_nas.core.spec import MAX_BLOCKS, MAX_WIDTH, ArchSpec, Conv, feature_sizes

MIN_WIDTH = 4
CHANNEL_MULTIPLE = 4  # fit prefers widths that are multiples of this (vectorise well), else any width
CHANNEL_MULTIPLES = (1, 2, 4, 8, 16, 32)


def channel_multiple_problem(multiple: int) -> str | None:
    """The one-line error for a width multiple fit does not offer, else None (SearchConfig and Budget)."""
    if multiple in CHANNEL_MULTIPLES:
        return None
    return f"--channel-multiple {multiple}: choose {', '.join(map(str, CHANNEL_MULTIPLES))}"


@dataclass(frozen=True)
class Budget:
    """Target MACs +- tolerance, optional cap on parameters."""

    target_macs: float = 100e6
    tolerance: float = 0.05
    max_params: int | None = None
    channel_multiple: int = CHANNEL_MULTIPLE  # fit's preferred width step (benchmarks/channel_multiple.py)

    def __post_init__(self) -> None:
        if not (self.target_macs > 0 and math.isfinite(self.target_macs)):
            raise DefectNasError(f"budget: target MACs must be a positive number, got {self.target_macs}")
        if not 0 < self.tolerance < 1:
            raise DefectNasError(f"budget: tolerance must be in (0, 1), got {self.tolerance}")
        if self.max_params is not None and self.max_params < 1:
            raise DefectNasError(f"budget: max params must be positive, got {self.max_params}")
        if problem := channel_multiple_problem(self.channel_multiple):
            raise DefectNasError(problem)

    @property
    def low(self) -> float:
        return self.target_macs * (1 - self.tolerance)

    @property
    def high(self) -> float:
        return self.target_macs * (1 + self.tolerance)

    def contains(self, macs: int) -> bool:
        return self.low <= macs <= self.high

    def violation(self, macs: int, params: int) -> float:
        """How far outside the budget (0 when inside), relative: optuna's constraint value (<= 0 is feasible)."""
        v = max(self.low - macs, macs - self.high, 0) / self.target_macs
        if self.max_params is not None:
            v = max(v, (params - self.max_params) / self.max_params)
        return v


def scale_widths(spec: ArchSpec, multiplier: float, divisor: int = 4) -> ArchSpec:
    """Every block's (and a decoder's) width times ``multiplier``, rounded to ``divisor``, within [4, 4096]."""

    def width(w: int) -> int:
        return int(min(MAX_WIDTH, max(MIN_WIDTH, round(w * multiplier / divisor) * divisor)))

    scaled = spec.map_blocks(lambda b: dataclasses.replace(b, out=width(b.out)))
    if spec.decoder is None:
        return scaled
    d = spec.decoder  # a segmentation decoder scales with its backbone
    return dataclasses.replace(scaled, decoder=dataclasses.replace(d, width=width(d.width), skip=width(d.skip)))


def _width_fit(spec: ArchSpec, budget: Budget, size: int, multiple: int = CHANNEL_MULTIPLE) -> ArchSpec | str:
    """Bisect the width multiplier; return a spec in the band or 'big' / 'small' / 'gap'."""
    widest = max(b.out for _, b in spec.blocks())
    lo_m, hi_m = MIN_WIDTH / widest / 2, MAX_WIDTH / widest
    if cost(scale_widths(spec, lo_m), size).macs > budget.high:
        return "big"
    if cost(scale_widths(spec, hi_m), size).macs < budget.low:
        return "small"
    for divisor in dict.fromkeys((multiple, 1)):
        a, b = math.log(lo_m), math.log(hi_m)
        for _ in range(32):  # bisect towards the lower edge of the band; stop once inside it
            mid = (a + b) / 2
            candidate = scale_widths(spec, math.exp(mid), divisor)
            m = cost(candidate, size).macs
            if budget.contains(m):
                return candidate
            if m >= budget.low:
                b = mid
            else:
                a = mid
        nudged = _nudge(scale_widths(spec, math.exp(a), divisor), budget, size, step=divisor)
        if nudged is not None:
            return nudged
    return "gap"


def _nudge(spec: ArchSpec, budget: Budget, size: int, steps: int = 64, step: int = 1) -> ArchSpec | None:
    """From just below the band, widen single blocks ``step`` channels at a time (largest MACs that
    stay under the top of the band first): closes the gaps that a common multiplier jumps over."""
    current, m = spec, cost(spec, size).macs
    for _ in range(steps):
        if budget.contains(m):
            return current
        best = None
        for i in range(len(current.blocks())):
            cand = _widen(current, i, step)
            cm = cost(cand, size).macs
            if m < cm <= budget.high and (best is None or cm > best[0]):
                best = (cm, cand)
        if best is None:
            return None
        m, current = best
    return current if budget.contains(m) else None


def _widen(spec: ArchSpec, index: int, step: int = 1) -> ArchSpec:
    counter = iter(range(len(spec.blocks())))
    return spec.map_blocks(
        lambda b: dataclasses.replace(b, out=min(MAX_WIDTH, b.out + step)) if next(counter) == index else b
    )


def _stride1_positions(spec: ArchSpec) -> list[tuple[int, int]]:
    """(stage, index) of residual/LW blocks that can be removed without changing resolution."""
    return [
        (s, i)
        for s, stage in enumerate(spec.stages)
        for i, b in enumerate(stage)
        if i > 0 and b.stride == 1 and not isinstance(b, Conv)
    ]


def _shallower(spec: ArchSpec) -> ArchSpec | None:
    pos = _stride1_positions(spec)
    if not pos:
        return None
    # drop the last repeatable block of the deepest stage
    s = max({p[0] for p in pos}, key=lambda st: (len(spec.stages[st]), st))
    i = max(p[1] for p in pos if p[0] == s)
    stages = list(spec.stages)
    stages[s] = stages[s][:i] + stages[s][i + 1 :]
    return dataclasses.replace(spec, stages=tuple(stages))


def _deeper(spec: ArchSpec) -> ArchSpec | None:
    if len(spec.blocks()) >= MAX_BLOCKS:
        return None
    candidates = [s for s, st in enumerate(spec.stages) if st and not isinstance(st[-1], Conv)]
    if not candidates:
        return None
    # repeat the last block (stride 1) of the shallowest stage, later stages first on ties
    s = min(candidates, key=lambda st: (len(spec.stages[st]), -st))
    stages = list(spec.stages)
    stages[s] = stages[s] + (dataclasses.replace(stages[s][-1], stride=1),)
    return dataclasses.replace(spec, stages=tuple(stages))


def _cheaper_first_layer(spec: ArchSpec, size: int) -> ArchSpec | None:
    """The first layer downsampling 2x more (a 3x3/2 max-pool added, else its stride 1 made 2), else
    its kernel one size smaller (7 -> 5 -> 3): the last resort when even the narrowest, shallowest net
    costs too much at the data's resolution (a low rung of --target-accuracy's ladder, e.g. 1M MACs
    at 200 px, where a 7x7 stem alone costs 2M); None when there is no such step or the maps would
    collapse."""
    first = spec.stem[0] if spec.stem else (spec.stages[0][0] if spec.stages and spec.stages[0] else None)
    if not isinstance(first, Conv):
        return None
    if first.pool == 0:
        new = dataclasses.replace(first, pool=3)
    elif first.stride == 1:
        new = dataclasses.replace(first, stride=2)
    elif first.kernel > 3:
        new = dataclasses.replace(first, kernel=first.kernel - 2)
    else:
        return None
    if spec.stem:
        candidate = dataclasses.replace(spec, stem=(new, *spec.stem[1:]))
    else:
        candidate = dataclasses.replace(spec, stages=((new, *spec.stages[0][1:]), *spec.stages[1:]))
    try:
        feature_sizes(candidate, size)
    except SpecError:
        return None
    return candidate


def fit(spec: ArchSpec, budget: Budget, input_size: int | None = None, multiple: int | None = None) -> ArchSpec:
    """Return ``spec`` rescaled so its MACs lie in the budget's band, or raise Infeasible; widths are
    multiples of ``multiple`` (default: the budget's ``channel_multiple``) where a common width
    multiplier or per-block steps of it reach the band."""
    size = spec.input_size if input_size is None else input_size
    multiple = multiple or budget.channel_multiple
    current: ArchSpec | None = spec
    direction = 0
    for _ in range(2 * MAX_BLOCKS):
        assert current is not None
        result = _width_fit(current, budget, size, multiple)
        if isinstance(result, ArchSpec):
            p = cost(result, size).params
            if budget.max_params is not None and p > budget.max_params:
                raise Infeasible(
                    f"fitted to {cost(result, size).macs:,} MACs the network has {p:,} params,"
                    f" over --max-params {budget.max_params:,}"
                )
            return result
        step = {"big": -1, "small": 1, "gap": direction or 1}[result]
        if direction and step != direction:
            break  # depth oscillates around the band: no depth hits it
        direction = step
        nxt = _shallower(current) if step < 0 else _deeper(current)
        if nxt is None and step < 0 and result == "big":
            nxt = _cheaper_first_layer(current, size)
        if nxt is None:
            band = f"{budget.low:,.0f}..{budget.high:,.0f} MACs"
            if result == "gap":
                raise Infeasible(f"{spec.name or 'spec'}: width steps jump over {band}; widen --tolerance")
            widest = max(b.out for _, b in current.blocks())
            m = cost(scale_widths(current, MIN_WIDTH / widest / 2 if step < 0 else MAX_WIDTH / widest), size).macs
            bound = "minimum" if step < 0 else "maximum"
            raise Infeasible(
                f"{spec.name or 'spec'}: even at {bound} width and depth it costs {m:,} MACs, outside"
                f" {band}; change the budget or the search space"
            )
        current = nxt
    raise Infeasible(f"{spec.name or 'spec'}: no width/depth hits {budget.low:,.0f}..{budget.high:,.0f} MACs")
