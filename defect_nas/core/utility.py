"""The search's objective: the utility the sampler maximises and rung 2's winner rule ranks by.

MACs are pinned inside the budget band, so with NetScore the choice happens on accuracy vs params,
and MACs say little about speed on a CPU (narrow layers at high resolution are memory-bound: the
reference winner uses under half the GFLOP/s ResNet-50 gets from the same cores). The latency-aware
utilities put *measured* latency (ONNX Runtime, batch 1, milliseconds) where it matters:

- ``netscore``: Wong's NetScore, 20 log10(a^2 / (p^0.5 m^0.5)), MACs m in billions (the default).
- ``netscore-latency``: the same with latency t in ms in place of m, 20 log10(a^2 / (p^0.5 t^0.5)):
  halving latency is worth as much as halving params (+3 dB).
- ``mnas``: MnasNet's soft-constrained reward a (t / T)^w with w = -0.07 (Tan et al. 2019), T the
  target latency (``--latency-target-ms``): 2x slower than the target costs about 5% of accuracy.

Pure arithmetic: no torch, so the engine, rung 2 and the report share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from defect_nas.core.errors import DefectNasError
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.registry import Registry

MNAS_W = -0.07  # MnasNet's soft constraint exponent (alpha = beta = -0.07)


@dataclass(frozen=True)
class Objective:
    needs_latency: bool
    describe: str


OBJECTIVES: Registry[Objective] = Registry("objective", "--objective")
OBJECTIVES.add("netscore", Objective(False, "NetScore = 20*log10(a^2 / (p^0.5 * m^0.5)), a = accuracy %, "
                                                  "p = params / 1e6, m = MACs / 1e9"))
OBJECTIVES.add("netscore-latency", Objective(True, "latency NetScore = 20*log10(a^2 / (p^0.5 * t^0.5)), "
                                                         "a = accuracy %, p = params / 1e6, t = ONNX Runtime "
                                                         "batch-1 latency in ms"))
OBJECTIVES.add("mnas", Objective(True, "MnasNet reward = a * (t / T)^-0.07, a = accuracy %, t = ONNX Runtime "
                                            "batch-1 latency, T = --latency-target-ms"))


def utility(objective: str, accuracy: float, params: float, macs: float, latency_ms: float | None = None,
            target_ms: float | None = None) -> float:
    """The value of ``objective`` for a measured ``accuracy`` (percent): higher is better. A model
    that got everything wrong still scores (very low) so that it ranks last."""
    OBJECTIVES.get(objective)
    if objective == "netscore":
        return measured_netscore(accuracy, params, macs)
    if latency_ms is None or latency_ms <= 0:
        raise DefectNasError(f"objective {objective}: needs a measured latency, got {latency_ms}")
    a = max(accuracy, 1e-6)
    if objective == "netscore-latency":
        return 20 * math.log10(a**2 / ((params / 1e6) ** 0.5 * latency_ms**0.5))
    if target_ms is None or target_ms <= 0:
        raise DefectNasError("objective mnas: give its target latency with --latency-target-ms (e.g. 1.0)")
    return a * (latency_ms / target_ms) ** MNAS_W


def describe_objective(config) -> str:
    """``config.objective`` (a SearchConfig's) named and defined, for summary, report and card."""
    text = f"{config.objective}: {OBJECTIVES.get(config.objective).describe}"
    return text + (f", T = {config.latency_target_ms:g} ms" if config.objective == "mnas" else "")
