"""Which recipe learns line-like data: resize policy, input size and imbalance handling, measured.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/line_recipe.py \
        --data /tmp/line/strip [--resize crop letterbox stretch] [--sizes 128] \
        [--imbalance shuffle sampler weights logit] [--epochs 20] [--seeds 0] [--jobs 2]

Builds nothing itself: give it a folder made by ``benchmarks/line_sets.py`` (or any ImageFolder).
For each (resize policy, square input size, imbalance method, seed) it loads the data with that
policy, trains the residual prototype (fitted to ``--budget-flops`` at that size, as a search
would) for a fixed number of epochs from scratch, and records balanced accuracy (validation and
test) and per-class test recall. Imbalance methods: ``shuffle`` (none), ``sampler`` (class-balanced
sampling), ``weights`` (class-weighted loss), ``logit`` (logit-adjusted loss, tau 1). Rows are
appended to ``results/benchmarks/line_recipe_runs.csv`` (resumable) and summarised (mean of seeds) in
``results/benchmarks/line_recipe.{csv,json}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from resumable import done_keys, read_runs, run_jobs  # noqa: E402

from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
IMBALANCE = {"shuffle": {}, "sampler": {"sampler": "balanced"}, "weights": {"class_weights": "balanced"},
             "logit": {"logit_adjust": 1.0}}


FIELDS = ["dataset", "resize", "size", "imbalance", "seed", "epochs", "macs", "val_balanced_accuracy",
          "test_balanced_accuracy", "test_accuracy", "best_epoch", "recall", "seconds"]
NUMERIC = ["size", "seed", "epochs", "macs", "val_balanced_accuracy", "test_balanced_accuracy", "test_accuracy",
           "best_epoch", "seconds"]


def run_one(data: str, resize: str, size: int, method: str, seed: int, epochs: int, budget: float) -> dict:
    import json

    import torch

    torch.set_num_threads(1)
    from defect_nas.core.budget import Budget, fit
    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.run import train_spec
    from defect_nas.evaluators.trainer import TrainConfig
    from defect_nas.search_spaces.base import Task, get_space

    ds = load_dataset(data, size=size, resize=resize)
    split = make_split(ds, seed=0)
    task = Task(ds.channels, size, ds.num_classes)
    spec = fit(get_space("residual").prototypes(task)["resnet-proto"], Budget(budget))
    cfg = TrainConfig(epochs=epochs, seed=seed, **IMBALANCE[method])
    t = time.time()
    r = train_spec(spec, ds, split, cfg, latency=False).summary
    m = r["test_metrics"]
    recall = {k: round(v, 1) for k, v in zip(ds.class_names, m["per_class_accuracy"])}
    return {"dataset": Path(data).name, "resize": resize, "size": size, "imbalance": method, "seed": seed,
            "epochs": epochs, "macs": r["macs"], "val_balanced_accuracy": round(r["val_accuracy"], 2),
            "test_balanced_accuracy": round(m["balanced_accuracy"], 2), "test_accuracy": round(m["accuracy"], 2),
            "best_epoch": r["best_epoch"], "recall": json.dumps(recall), "seconds": round(time.time() - t, 1)}


def summarise(df) -> list[dict]:
    keys = ["dataset", "resize", "size", "imbalance", "epochs"]
    num = [c for c in NUMERIC if c not in keys + ["seed"]]
    g = df.groupby(keys)
    out = g[num].mean().round(2).reset_index()
    out["seeds"] = g.size().values
    out["test_balanced_std"] = g["test_balanced_accuracy"].std().fillna(0).round(2).values
    return out.to_dict("records")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--resize", nargs="+", default=["stretch"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[128])
    ap.add_argument("--imbalance", nargs="+", default=list(IMBALANCE), choices=list(IMBALANCE))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--budget-flops", type=float, default=100e6)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.out / "line_recipe_runs.csv"
    done = done_keys(runs, NUMERIC, ["dataset", "resize", "size", "imbalance", "seed", "epochs"])
    jobs = [(d, r, s, m, seed, args.epochs, args.budget_flops) for d in args.data for r in args.resize
            for s in args.sizes for m in args.imbalance for seed in args.seeds]
    todo = [j for j in jobs if (Path(j[0]).name, *j[1:6]) not in done]
    run_jobs(run_one, todo, runs, FIELDS, args.jobs)
    table = summarise(read_runs(runs, NUMERIC))
    write_csv(args.out / "line_recipe.csv", table)
    write_json(args.out / "line_recipe.json", {"rows": table, "environment": environment(0)})
    for row in table:
        print(row)


if __name__ == "__main__":
    main()
