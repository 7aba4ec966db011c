"""``--target-accuracy``: the cheapest converged network that reaches the user's accuracy.

Why a descending ladder of budgets: NEU saturates at 100M MACs while 10M reach the same accuracy
(results/benchmarks/neu_10m_probe.*), and the band fit already makes a budget exact. Each rung is an
ordinary search (explore, promote, converged final seeds) in ``budgets/<N>m/`` under its share of the
time; the converged winners form the front, and the cheapest whose validation mean reaches the
target is exported. The first rung is the ceiling (``--budget-flops``), so no point exceeds it.
Before each cheaper rung the ladder is cut to the budgets whose seeds the time left can still train
to convergence (at the last rung's measured pace): fewer points with converged seeds are worth more
than more points with starved ones, and when none fits the descent stops.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from defect_nas.core.files import write_csv, write_json
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.utility import OBJECTIVES
from defect_nas.nas.front_report import write_front_report
from defect_nas.nas.plan import MIN_FINAL_EPOCHS, reserve_seconds

LADDER = (1.0, 0.3, 0.1, 0.03)  # of the ceiling: 100M -> 30M -> 10M -> 3M by default
MIN_RUNG_S = 300.0  # a rung's search and 3 converged seeds at <= 10M MACs on NEU took ~20 min on 2 cores;
# under 5 minutes a rung's seeds would not converge: the time is better spent on fewer, longer rungs
FRONT_COLUMNS = ("budget_flops", "run", "name", "macs", "params", "latency_onnx_ms", "val_accuracy_mean",
                 "test_accuracy_mean", "test_accuracy_min", "test_accuracy_std", "seeds", "epochs_run",
                 "reached", "chosen", "note")

RunOne = Callable[[SearchConfig, Path, float], dict]  # (config, run folder, started) -> the run's summary


def rungs_that_fit(ceiling: float, time_budget_s: float | None, feasible: Callable[[float], bool]) -> list[float]:
    """The budgets to try, most expensive first: the ladder's feasible budgets, as many as the time
    gives each at least MIN_RUNG_S (at least one: the ceiling)."""
    budgets = [ceiling * f for f in LADDER if feasible(ceiling * f)] or [ceiling]
    if time_budget_s is not None:
        budgets = budgets[: max(1, int(time_budget_s // MIN_RUNG_S))]
    return budgets


def keep_descending(points: list[dict], target: float) -> bool:
    """After a rung: go on unless the target was reached above and missed here (accuracy falls
    with budget: the cheaper rungs would miss it too, and the time is better left unspent)."""
    if len(points) < 2:
        return True
    return not (points[-1]["reached"] is False and any(p["reached"] for p in points[:-1]))


def seed_epochs_per_s(summary: dict) -> float | None:
    """How fast a rung's final seeds trained, all seeds together (seed-epochs per second), or None."""
    epochs = sum((summary.get("winner") or {}).get("epochs_run") or [])
    final_s = (summary.get("timeline") or {}).get("final_s")
    return epochs / final_s if epochs and final_s else None


def final_seconds(share_s: float, config: SearchConfig) -> float:
    """What a rung's final seeds get of its time share (``TimePlan``'s split, set-up taken as nil)."""
    return (share_s - reserve_seconds(share_s)) * (1 - config.explore_share - config.promote_share)


#: A budget x times cheaper trains its seeds at least x ** PACE_EXPONENT times as fast (NEU, 200 px, the
#: reference run's seed-epochs per second: 100M -> 30M 1.65x for 3.4x fewer MACs (x^0.41), 30M -> 10M
#: 1.97x for 3x (x^0.62), 10M -> 3M 1.16x for 3.3x, its seeds capped at 150 epochs before the time).
PACE_EXPONENT = 0.4


def rungs_worth_running(left_s: float, budgets: list[float], config: SearchConfig, pace: float | None,
                        paced: float | None = None) -> int:
    """How many of the remaining ``budgets`` (most expensive first) to run: as many as the time left
    gives each an equal share in which ``config.final_seeds`` seeds train MIN_FINAL_EPOCHS epochs at
    ``pace`` (the seed-epochs per second of the last rung, budget ``paced``), sped up for the next,
    cheaper budget by PACE_EXPONENT. 0: no cheaper budget would converge, so the descent stops."""
    if pace is None:
        return len(budgets)
    if paced is not None and budgets:
        pace *= max(1.0, paced / budgets[0]) ** PACE_EXPONENT
    need = config.final_seeds * MIN_FINAL_EPOCHS / pace
    return next((k for k in range(len(budgets), 0, -1) if final_seconds(left_s / k, config) >= need), 0)


def front_point(budget: float, run: str, summary: dict, target: float) -> dict:
    """One converged point of the front from a rung's summary (None fields: the rung had no winner)."""
    w = summary.get("winner") or {}
    tests = w.get("test_accuracies") or []
    val = w.get("val_accuracy_mean")
    return {
        "budget_flops": budget, "run": run, "name": w.get("name"), "macs": w.get("macs"), "params": w.get("params"),
        "latency_onnx_ms": w.get("latency_onnx_ms"), "val_accuracy_mean": val,
        "test_accuracy_mean": w.get("test_accuracy_mean"), "test_accuracy_min": min(tests) if tests else None,
        "test_accuracy_std": w.get("test_accuracy_std"), "seeds": w.get("seeds"),
        "epochs_run": w.get("epochs_run"), "reached": None if val is None else val >= target, "chosen": False,
        "note": None if w else (summary.get("nothing_learned")
                                or f"no converged winner (trials: {summary.get('trial_counts')})"),
    }


def choose(points: list[dict], target: float, cost: str) -> tuple[dict | None, str | None]:
    """The cheapest point whose validation mean reaches the target; else the most accurate, with a warning."""
    done = [p for p in points if p["val_accuracy_mean"] is not None]
    if not done:
        return None, None
    reached = [p for p in done if p["val_accuracy_mean"] >= target]
    if reached:
        return min(reached, key=lambda p: (p[cost] if p[cost] is not None else math.inf, p["macs"])), None
    best = max(done, key=lambda p: p["val_accuracy_mean"])
    return best, (f"no network reached the target accuracy {target:g}%: the most accurate of {len(done)} "
                  f"converged point(s) is exported ({best['val_accuracy_mean']:.2f}% validation, {best['run']})")


def run_target(config: SearchConfig, run_dir: Path, target: float, run_one: RunOne, *, started: float,
               feasible: Callable[[float], bool], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Descend the budget ladder under ``config.time_budget_s`` and export the chosen point to ``winner/``."""
    under = 1 - config.tolerance  # each budget is a ceiling: its band is [B(1 - 2 tol), B], never above B
    budgets = rungs_that_fit(config.budget_flops, config.time_budget_s, lambda b: feasible(b * under))
    cost = "latency_onnx_ms" if OBJECTIVES.get(config.objective).needs_latency else "macs"
    deadline = None if config.time_budget_s is None else started + config.time_budget_s
    run_dir.mkdir(parents=True, exist_ok=True)
    points: list[dict] = []
    stopped, interrupted = "the ladder's last budget", False
    queue, pace, paced = list(budgets), None, None
    while queue:
        if deadline is not None and points:
            k = rungs_worth_running(deadline - time.time(), queue, config, pace, paced)
            if k < len(queue):
                cut = ", ".join(f"{b / 1e6:g}m" for b in queue[k:])
                log(f"target {target:g}%: {cut} dropped: the time left would not train their "
                    f"{config.final_seeds} seeds {MIN_FINAL_EPOCHS} epochs at the last budget's pace, scaled to theirs")
                queue = queue[:k]
            if not queue:
                stopped = (f"the time left trains no cheaper budget's {config.final_seeds} seeds to "
                           f"{MIN_FINAL_EPOCHS} epochs: the seeds already trained are the front")
                break
        budget = queue.pop(0)
        now = time.time()
        share = None if deadline is None else (deadline - now) / (len(queue) + 1)
        name = f"{budget / 1e6:g}m"
        log(f"target {target:g}%: budget {name} ({len(points) + 1} of {len(points) + len(queue) + 1})"
            + ("" if share is None else f", {share / 60:.1f} min"))
        sub = replace(config, budget_flops=budget * under, time_budget_s=share, fastest_in_band=True)
        summary = run_one(sub, run_dir / "budgets" / name, now)
        points.append(front_point(budget, f"budgets/{name}", summary, target))
        if (measured := seed_epochs_per_s(summary)) is not None:
            pace, paced = measured, budget
        if summary.get("interrupted"):
            stopped, interrupted = "interrupted", True
            break
        if not keep_descending(points, target):
            stopped = f"budget {name} missed the target that a larger budget reached: cheaper ones would too"
            break
    chosen, warning = choose(points, target, cost)
    if chosen is not None:
        chosen["chosen"] = True
        shutil.copytree(run_dir / chosen["run"] / "winner", RunFolder(run_dir).winner, dirs_exist_ok=True)
    write_csv(run_dir / "front.csv", [{k: p[k] for k in FRONT_COLUMNS} for p in points])
    result = {
        "run": run_dir.name, "run_dir": str(run_dir), "target_accuracy": target, "cost": cost,
        "ladder": list(budgets), "stopped": stopped, "front": points, "winner": chosen, "warning": warning,
        "interrupted": interrupted, "wall_s": round(time.time() - started, 1),
        "config": config.to_dict(),
    }
    write_json(RunFolder(run_dir).summary, result)
    write_front_report(RunFolder(run_dir).report, result)
    return result
