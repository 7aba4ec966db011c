"""A study read back as rows: every trial flat (trials.csv, the report, the progress table) and the
best of them (rung-2 entrants, the NetScore top-k); plain functions of optuna's stored trials."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna

from defect_nas.core.netscore import measured_netscore
from defect_nas.core.runfolder import RunFolder
from defect_nas.nas.records import RunSummary, TrialRow


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trial as a flat row (trials.csv and the report)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        val = a.get("val_accuracy")
        if val is None and t.intermediate_values:
            val = t.intermediate_values[max(t.intermediate_values)]
        cons = t.system_attrs.get("constraints") if hasattr(t, "system_attrs") else None
        named = dict(getattr(t, "constraints", None) or {})
        constraint = max(named.values()) if named else (max(cons) if cons else None)
        # within the budget and caps; only the accuracy floor may be missed (a candidate, with a warning)
        within_caps = all(v <= 0 for k, v in named.items() if k != "accuracy_floor") if named else (
            constraint is None or constraint <= 0)
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append({
            "number": t.number, "state": t.state.name, "space": a.get("space"), "prototype": a.get("prototype"),
            "spec_digest": a.get("digest"), "macs": a.get("macs"), "params": a.get("params"),
            "fidelity_epochs": (a.get("fidelity") or {}).get("epochs"),
            "fidelity_input_size": (a.get("fidelity") or {}).get("input_size"),
            "epochs_run": a.get("epochs_run", len(t.intermediate_values) or None),
            "val_accuracy": val, "test_accuracy": a.get("test_accuracy"), "latency_search_ms": a.get("latency_ms"),
            "latency_ms": None, "latency_cv": None,  # timed apart from training, for the compared designs
            "gflops": None, "fraction_of_peak": None,
            "netscore": a.get("netscore") if a.get("netscore") is not None else (
                measured_netscore(val, a["params"], a["macs"]) if val is not None and a.get("macs") else None),
            "utility": a.get("utility", a.get("netscore")),
            "constraint": constraint, "feasible": constraint is None or constraint <= 0, "within_caps": within_caps,
            "infeasible_reason": a.get("infeasible"), "retry_of": a.get("retry_of"),
            "reused_from": a.get("reused_from"),
            "datetime_start": t.datetime_start, "duration_s": duration,
        })
    return rows


def best_trials(rows: list[TrialRow], k: int, min_accuracy: float, by: str = "accuracy") -> list[TrialRow]:
    """The k best finished, feasible, trained trials, one per architecture, ranked ``by`` validation
    "accuracy" (ties to the search's utility) or validation "netscore". Trials below ``min_accuracy`` count only
    when none reaches it (the caller says so), so a finished search always has candidates."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("within_caps", r["feasible"])
            and r["val_accuracy"] is not None and r["spec_digest"]]
    ok = [r for r in done if r["val_accuracy"] >= min_accuracy] or done
    if by == "accuracy":
        ranked = sorted(ok, key=lambda r: (-r["val_accuracy"], -(r.get("utility") or r["netscore"] or 0), r["number"]))
    elif by == "netscore":
        ranked = sorted(ok, key=lambda r: (-(r["netscore"] or 0), r["number"]))
    else:
        raise ValueError(f"best_trials by {by!r}: accuracy or netscore")
    return distinct(ranked)[:k]


def distinct(rows: list[TrialRow]) -> list[TrialRow]:
    """The first row of each architecture (spec digest), in order."""
    out, seen = [], set()
    for r in rows:
        if r["spec_digest"] not in seen:
            seen.add(r["spec_digest"])
            out.append(r)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def read_trials_csv(path: Path) -> list[TrialRow]:
    """The rows of a written trials.csv, typed as ``trial_rows`` makes them (empty cells are None)."""
    import pandas as pd

    try:
        df = pd.read_csv(path).convert_dtypes()  # integer columns with empty cells stay integers
    except pd.errors.EmptyDataError:  # a study without trials
        return []
    if "latency_search_ms" not in df.columns:  # written before latency was timed apart from training:
        df["latency_search_ms"], df["latency_ms"] = df.get("latency_ms"), None  # its figure is the in-search one
    return df.astype(object).where(df.notna(), None).to_dict("records")


def load_summary(run_dir: Path) -> RunSummary:
    path = RunFolder(run_dir).summary
    return json.loads(path.read_text()) if path.is_file() else {}
