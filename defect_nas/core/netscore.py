"""NetScore (Wong, 2019), the utility TinyDefectNet's search maximises.

Omega = 20 log10( a^alpha / (p^beta * m^gamma) ), with a the accuracy in percent, p the
parameters in millions and m the MACs in billions (alpha = 2, beta = gamma = 0.5). Units and
exponents are configurable and printed with every report so scores stay comparable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from defect_nas.core.errors import DefectNasError


@dataclass(frozen=True)
class NetScoreConfig:
    alpha: float = 2.0
    beta: float = 0.5
    gamma: float = 0.5
    params_unit: float = 1e6  # p in millions of parameters
    macs_unit: float = 1e9  # m in billions of MACs

    def describe(self) -> str:
        return (
            f"NetScore = 20*log10(a^{self.alpha:g} / (p^{self.beta:g} * m^{self.gamma:g})),"
            f" a = accuracy %, p = params / {self.params_unit:g}, m = MACs / {self.macs_unit:g}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT = NetScoreConfig()


def netscore(accuracy: float, params: float, macs: float, config: NetScoreConfig = DEFAULT) -> float:
    """NetScore in dB of a model with ``accuracy`` (percent), ``params`` and ``macs`` (counts)."""
    if not 0 < accuracy <= 100:
        raise DefectNasError(f"netscore: accuracy must be a percentage in (0, 100], got {accuracy}")
    if params <= 0 or macs <= 0:
        raise DefectNasError(f"netscore: params and MACs must be positive, got {params} and {macs}")
    p, m = params / config.params_unit, macs / config.macs_unit
    return 20 * math.log10(accuracy**config.alpha / (p**config.beta * m**config.gamma))


def measured_netscore(accuracy: float, params: float, macs: float, config: NetScoreConfig = DEFAULT) -> float:
    """NetScore of a *measured* accuracy: a model that got everything wrong (0%) scores very low
    (as 1e-6 %) instead of raising, so a failed candidate still ranks last."""
    return netscore(max(accuracy, 1e-6), params, macs, config)
