"""How a time budget is split between exploration, rung 2, the final seeds and export
(``TimePlan``), and how many final seeds fit in what is left."""

from __future__ import annotations

import math
from dataclasses import dataclass

from defect_nas.core.search_config import SearchConfig


@dataclass(frozen=True)
class TimePlan:
    """Wall-clock ends (``time.time()``) of each phase of a run with a time budget; all None without."""

    started: float
    end: float | None = None
    explore_end: float | None = None
    promote_end: float | None = None
    final_end: float | None = None

    @classmethod
    def make(cls, config: SearchConfig, started: float, now: float, baselines: bool) -> TimePlan:
        """Split what set-up (data, teacher) left of the budget, less a reserve for export and report."""
        if config.time_budget_s is None:
            return cls(started)
        end = started + config.time_budget_s
        reserve = reserve_seconds(config.time_budget_s)
        usable = max(0.0, end - reserve - now)
        explore_end = now + config.explore_share * usable
        promote_end = explore_end + config.promote_share * usable
        final_end = end - reserve
        if baselines:  # they must not eat the winner's time: they get the last 30% of what follows promotion
            final_end = promote_end + 0.7 * (final_end - promote_end)
        return cls(started, end, explore_end, promote_end, final_end)

    def to_dict(self) -> dict[str, float | None]:
        """Planned seconds from the start at which each phase ends."""
        rel = {k: getattr(self, k) for k in ("explore_end", "promote_end", "final_end", "end")}
        return {k: (None if v is None else round(v - self.started, 1)) for k, v in rel.items()}


def reserve_seconds(budget_s: float) -> float:
    """Kept back for export, latency measurement and the report (``export_s`` in the timeline)."""
    return min(60.0, max(8.0, 0.02 * budget_s))


MIN_FINAL_EPOCHS = 40  # fewer and a seed is far from converged (NEU's reference winner: 95.6% at 15 epochs,


def seeds_that_fit(wanted: int, pace: float | None, train_images: int, seconds: float | None) -> tuple[int, float]:
    """How many final seeds can each train MIN_FINAL_EPOCHS in ``seconds`` when the machine trains
    ``pace`` images/s at the final size in all (seeds share it), and the epochs each would get."""
    if pace is None or seconds is None or train_images == 0:
        return wanted, math.inf
    for n in range(wanted, 0, -1):
        epochs = seconds * pace / n / train_images
        if epochs >= MIN_FINAL_EPOCHS:
            return n, epochs
    return 1, seconds * pace / train_images
