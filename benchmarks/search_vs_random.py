"""TPE (the generator) against random search: same time budget, same seeds, run side by side.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/search_vs_random.py \
        [--minutes 12 --seeds 0 1 --epochs 6 --proxy-input-size 64]

For each seed, one TPE search and one random search run at the same time (one worker, one thread
each), so machine load falls on both alike. Each is scored by what a user gets: the best
validation NetScore among feasible trials above the accuracy floor, and the best validation
accuracy. No top-k retraining. Writes results/benchmarks/search_vs_random.{csv,json}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd


def one(strategy: str, seed: int, args: dict, out: str) -> dict:
    import optuna

    from defect_nas.core.search_config import SearchConfig
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.nas.rows import best_trials, trial_rows
    from defect_nas.nas.run import run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Runtime(threads=1).apply()
    cfg = SearchConfig(dataset="neu", spaces=tuple(args["spaces"]), budget_flops=args["budget"], strategy=strategy,
                       time_budget_s=args["minutes"] * 60, explore_share=0.98, promote_share=0.0,
                       epochs=args["epochs"],
                       proxy_input_size=args["proxy_input_size"], min_epochs=2, min_accuracy=args["min_accuracy"],
                       seed=seed, teacher=args["teacher"], baselines=("none",))
    run_dir = Path(out) / f"{strategy}-s{seed}"
    summary = run_search(cfg, run_dir, workers=1, threads=1, log=lambda m: None, finalize=False)
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    rows = trial_rows(study)
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["val_accuracy"] is not None]
    above = [r for r in ok if r["val_accuracy"] >= args["min_accuracy"]]
    best = best_trials(rows, 1, args["min_accuracy"], by="netscore")
    return {"strategy": strategy, "seed": seed, "trials": len(rows), "complete": len(ok),
            "pruned": summary["trial_counts"].get("PRUNED", 0), "above_floor": len(above),
            "best_val_netscore": max((r["netscore"] for r in above), default=None),
            "best_val_accuracy": max((r["val_accuracy"] for r in ok), default=None),
            "best_trial": best[0]["number"] if best else None,
            "best_test_accuracy": best[0]["test_accuracy"] if best else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--proxy-input-size", type=int, default=64)
    ap.add_argument("--budget", type=float, default=100e6)
    ap.add_argument("--spaces", nargs="+", default=["residual"])
    ap.add_argument("--min-accuracy", type=float, default=90.0)
    ap.add_argument("--teacher", default="vgg16")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="search-vs-random-")
    rows = []
    try:
        for seed in args.seeds:
            # the two strategies side by side (pool workers that may start worker processes themselves)
            with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
                jobs = [pool.submit(one, s, seed, vars(args), work) for s in ("tpe", "random")]
                for j in jobs:
                    rows.append(j.result())
                    print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    df = pd.DataFrame(rows)
    table = df.groupby("strategy")[["trials", "best_val_netscore", "best_val_accuracy", "best_test_accuracy"]].agg(
        ["mean", "std"])
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "search_vs_random.csv", index=False)
    from defect_nas.measure.runinfo import environment

    (out / "search_vs_random.json").write_text(json.dumps(
        {"runs": rows, "settings": vars(args), "note": "scores are validation NetScore (dB) of the best feasible "
         "trial above the accuracy floor; test accuracy of that trial at search fidelity",
         "environment": environment(None)}, indent=2, default=str))


if __name__ == "__main__":
    main()
