"""Does the head's global pooling decide whether small defects are found? Average vs max, measured.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/line_pool.py \
        --data /tmp/line/strip --pools gap gmp [--shape 211x211] [--epochs 40] [--seeds 0 1] [--jobs 2]

On ``strip`` (``benchmarks/line_sets.py``) every arm called most defect-free images defective, and
its eye-clean test images as often as those with a mark (``benchmarks/line_audit.py --score``): the
labels do not explain it. A defect there is 0.3-4% of the image; global average pooling (``gap``)
averages its response with the whole, mostly defect-free map, global max pooling (``gmp``) keeps
the strongest one. The residual prototype is trained exactly as in ``line_shape.py`` (stretched to
``--shape``, fitted to 100M MACs, class-balanced batches, fixed epochs) once per head, and scored on
the seed-0 split's test part, on its own training part (does it fit?), and on the test images the eye
called clean (``results/benchmarks/line_audit.csv``). Rows go to ``results/benchmarks/line_pool_runs.csv``
(resumable), means of seeds to ``line_pool.{csv,json}``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from line_audit import AUDIT_CSV  # noqa: E402
from line_shape import train_prototype  # noqa: E402
from resumable import done_keys, read_runs, run_jobs, write_seed_means  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
FIELDS = ["dataset", "pool", "shape", "seed", "epochs", "macs", "val_balanced_accuracy", "test_balanced_accuracy",
          "train_balanced_accuracy", "eye_clean_ok_recall", "best_epoch", "recall", "seconds"]
NUMERIC = ["seed", "epochs", "macs", "val_balanced_accuracy", "test_balanced_accuracy", "train_balanced_accuracy",
           "eye_clean_ok_recall", "best_epoch", "seconds"]


def eye_clean(dataset: str) -> set[str]:
    """The test images of ``dataset`` the audit called clean (``ok/NNNNN.png``)."""
    rows = csv.DictReader(AUDIT_CSV.open()) if AUDIT_CSV.is_file() else []
    return {r["file"] for r in rows if r["set"] == dataset and r.get("part") == "test" and r["verdict"] == "clean"}


def run_one(data: str, pool: str, shape: str, seed: int, epochs: int, budget: float) -> dict:
    import torch

    from defect_nas.evaluators.trainer import evaluate, predict_logits

    ds, split, model, result, macs, seconds = train_prototype(data, shape, seed, epochs, budget, pool)
    m = evaluate(model, ds.images[split.test], ds.labels[split.test], ds.class_names)
    fit = evaluate(model, ds.images[split.train], ds.labels[split.train], ds.class_names)
    audited = eye_clean(Path(data).name)  # read once, not per test image
    clean = [i for i in split.test.tolist() if ds.paths[i] in audited]
    ok = ds.class_names.index("ok")
    eye = None
    if clean:
        calls = predict_logits(model, ds.images[torch.tensor(clean)]).argmax(1)
        eye = round(100 * float((calls == ok).float().mean()), 1)
    return {"dataset": Path(data).name, "pool": pool, "shape": shape, "seed": seed, "epochs": epochs, "macs": macs,
            "val_balanced_accuracy": round(result.val_accuracy, 2),
            "test_balanced_accuracy": round(m.balanced_accuracy, 2),
            "train_balanced_accuracy": round(fit.balanced_accuracy, 2), "eye_clean_ok_recall": eye,
            "best_epoch": result.best_epoch,
            "recall": json.dumps({k: round(v, 1) for k, v in zip(ds.class_names, m.per_class_accuracy)}),
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--pools", nargs="+", default=["gap", "gmp"], choices=["gap", "gmp"])
    ap.add_argument("--shape", default="211x211")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--budget-flops", type=float, default=100e6)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.out / "line_pool_runs.csv"
    key = ["dataset", "pool", "shape", "seed", "epochs"]
    done = done_keys(runs, NUMERIC, key)
    jobs = [(d, p, args.shape, seed, args.epochs, args.budget_flops) for seed in args.seeds for p in args.pools
            for d in args.data]
    run_jobs(run_one, [j for j in jobs if (Path(j[0]).name, *j[1:5]) not in done], runs, FIELDS, args.jobs)
    cols = ["macs", "val_balanced_accuracy", "test_balanced_accuracy", "train_balanced_accuracy",
            "eye_clean_ok_recall", "seconds"]
    write_seed_means(read_runs(runs, NUMERIC), ["dataset", "pool", "shape", "epochs"], cols, args.out, "line_pool")

if __name__ == "__main__":
    main()
