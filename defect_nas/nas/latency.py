"""Latency that means something: the designs a run compares on speed, measured apart from training.

During exploration each trial's latency is timed while other trials train beside it, so it only
screens (the minimum of its runs: contention only ever adds time, so ``--max-latency-ms`` excludes a
design only when even its fastest run misses the cap). After exploration, with nothing training,
the designs on the accuracy-vs-params and accuracy-vs-latency fronts and the rung-2 entrants are
measured again with ``stable_latency`` (ONNX Runtime, batch 1, several measurements and their
spread), once per architecture: ``latency.json`` in the run folder caches them by spec digest, so a
resumed run or ``defect-nas report`` does not measure again. Those are the figures the report plots.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import write_json
from defect_nas.core.pareto import pareto_front
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.spec import ArchSpec
from defect_nas.measure.latency import cpu_model
from defect_nas.measure.peak import peak_gflops
from defect_nas.measure.quiet_latency import stable_latency
from defect_nas.nas.records import TrialRow
from defect_nas.nas.rows import distinct
from defect_nas.search_spaces.build import build

PEAK = "peak"  # latency.json's key for the machine's measured peak (the others are spec digests)
MAX_DESIGNS = 24  # about 1.5 s each
TIME_SHARE = 0.03  # of the time the run has left after exploration: 65 s of a 60-minute run's 36 minutes


def compared_designs(rows: list[TrialRow], entrants: list[TrialRow]) -> list[TrialRow]:
    """One row per architecture worth timing: the entrants, then the two fronts' designs."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["val_accuracy"] is not None
            and r["spec_digest"]]
    picked = [*entrants, *pareto_front(done, minimize=("params",)),
              *pareto_front(done, minimize=("latency_search_ms",))]
    return distinct(picked)[:MAX_DESIGNS]


def read_cache(run_dir: Path) -> dict[str, Any]:
    path = RunFolder(run_dir).latency_cache
    return json.loads(path.read_text()) if path.is_file() else {}


def measure_designs(study: optuna.Study, rows: list[TrialRow], entrants: list[TrialRow], run_dir: Path,
                    threads: int, log: Callable[[str], None], until: float | None = None) -> dict[str, Any]:
    """Time the compared designs not yet in ``latency.json`` (same CPU and threads), entrants first,
    until the wall-clock time ``until`` (a small share of what the run has left); return the cache."""
    cache, cpu = read_cache(run_dir), cpu_model()
    todo = [r for r in compared_designs(rows, entrants)
            if (cache.get(r["spec_digest"]) or {}).get("threads") != threads
            or cache[r["spec_digest"]].get("cpu_model") != cpu]
    if todo:
        log(f"timing {len(todo)} design(s) apart from training (ONNX Runtime, batch 1, {threads} thread(s))")
    peak = cache.get(PEAK) or {}
    stale = (peak.get("threads"), peak.get("cpu_model")) != (threads, cpu)
    if todo and stale and (until is None or time.time() < until):
        cache[PEAK] = {"gflops": round(peak_gflops("fp32", threads, min_run_time=0.5), 1), "threads": threads,
                       "cpu_model": cpu, "what": "1024^3 fp32 GEMM, ONNX Runtime"}  # what designs are set against
        write_json(RunFolder(run_dir).latency_cache, cache)
    for i, r in enumerate(todo):
        if until is not None and time.time() > until:
            log(f"{len(todo) - i} design(s) left untimed: their share of --time-budget is spent")
            break
        spec = ArchSpec.from_json(study.trials[r["number"]].user_attrs["spec"])
        try:
            measured = stable_latency(build(spec), (spec.in_channels, spec.input_size, spec.input_size),
                                      threads=threads)
        except DefectNasError as e:  # e.g. an ONNX export that does not match: that design stays untimed
            log(f"trial {r['number']} not timed: {str(e).splitlines()[0][:160]}")
            continue
        cache[r["spec_digest"]] = {**measured.to_dict(), "trial": r["number"]}
        write_json(RunFolder(run_dir).latency_cache, cache)  # each one kept as it comes
    return cache


def with_latency(rows: list[TrialRow], cache: dict[str, Any]) -> list[TrialRow]:
    """Rows with ``latency_ms`` (and its ``latency_cv``) from the quiet measurement where there is one,
    and the GFLOP/s that latency achieves (2 x MACs per image) as a fraction of the measured peak."""
    peak = (cache.get(PEAK) or {}).get("gflops")
    for r in rows:
        hit = cache.get(r["spec_digest"] or "")
        r["latency_ms"] = hit["latency_ms"] if hit else None
        r["latency_cv"] = hit["cv"] if hit else None
        r["gflops"] = round(2 * r["macs"] / hit["latency_ms"] / 1e6, 1) if hit and r.get("macs") else None
        r["fraction_of_peak"] = round(r["gflops"] / peak, 3) if r["gflops"] and peak else None
    return rows
