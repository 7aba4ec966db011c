"""Does bf16 autocast training cost accuracy where the model is deployed (fp32, ONNX Runtime)?

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/precision.py \
        --arch results/neu-100m/winner/arch.json --epochs 100 --seeds 0 [--precisions bf16 fp32]

Each (precision, seed) trains in its own process, all at once (one thread each), at 200 px with
the trainer's defaults and a fixed number of epochs; or, with ``--patience`` and ``--time-budget``,
with the search's final recipe (``--epochs`` is then the cap). Every trained model is then scored
on validation and test in both precisions. Writes ``results/benchmarks/<--name>.{csv,json}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def one(arch: str, precision: str, seed: int, epochs: int, patience: int | None, budget: float | None) -> dict:

    from defect_nas.core.spec import ArchSpec
    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.run import train_spec
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.evaluators.trainer import TrainConfig, evaluate

    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    spec = ArchSpec.from_json(Path(arch).read_text())
    cfg = TrainConfig(epochs=epochs, input_size=200, seed=seed, patience=patience, time_budget_s=budget)
    r = train_spec(spec, ds, split, cfg, latency=False, runtime=Runtime(threads=1, precision=precision).apply())
    row = {"arch": Path(arch).parent.name, "train_precision": precision, "seed": seed, "epochs": epochs,
           "params": r.summary["params"], "macs": r.summary["macs"], "best_epoch": r.summary["best_epoch"],
           "epochs_run": r.summary["epochs_run"], "planned_epochs": r.summary["planned_epochs"],
           "stop_reason": r.summary["stop_reason"], "patience": patience, "time_budget_s": budget,
           "train_seconds": round(r.summary["train_seconds"], 1)}
    for ev in ("bf16", "fp32"):
        for part, idx in (("val", split.val), ("test", split.test)):
            m = evaluate(r.model, ds.images[idx], ds.labels[idx], ds.class_names, precision=ev)
            row[f"{part}_{ev}_eval"] = m.accuracy
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="results/neu-100m/winner/arch.json")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--patience", type=int)
    ap.add_argument("--time-budget", type=float, help="seconds per training (the final phase's sizing)")
    ap.add_argument("--name", default="precision")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    jobs = [
        (args.arch, p, s, args.epochs, args.patience, args.time_budget) for s in args.seeds for p in args.precisions
    ]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        rows = pool.starmap(one, jobs)
    from defect_nas.measure.runinfo import environment

    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{args.name}.csv", index=False)
    (out / f"{args.name}.json").write_text(json.dumps({
        "runs": rows, "protocol": {"input_size": 200, "epochs": args.epochs, "train": "TrainConfig defaults",
                                   "split": "seed 0 (the reference run's)", "processes": len(jobs), "threads": 1},
        "environment": environment(None)}, indent=2, default=str))


if __name__ == "__main__":
    main()
