"""Does the input's shape matter on line data? Square vs non-square inputs, and more pixels, measured.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/line_shape.py \
        --data /tmp/line/strip --shapes 211x211 140x318 176x424 [--epochs 40] [--seeds 0 1] [--jobs 1]

Give it a folder made by ``benchmarks/line_sets.py``. Every image is turned landscape (a tall image is
transposed: textures have no canonical orientation and training already uses flips and turns), then
stretched to each H x W. The residual prototype is fitted to ``--budget-flops`` at the square of the
same pixel count (MACs of a conv net with global pooling follow the pixel count; the MACs recorded are
fvcore's count at the real H x W), trained from scratch with class-balanced sampling (the search's
default on imbalanced data) for a fixed number of epochs (non-square inputs train on the four views
that keep their shape), and scored on the seed-0 split's test part. Rows go to
``results/benchmarks/line_shape_runs.csv`` (resumable), means of seeds to ``line_shape.{csv,json}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from resumable import done_keys, read_runs, run_jobs, write_seed_means  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
FIELDS = ["dataset", "shape", "seed", "epochs", "macs", "val_balanced_accuracy", "test_balanced_accuracy",
          "test_accuracy", "best_epoch", "recall", "seconds"]
NUMERIC = ["seed", "epochs", "macs", "val_balanced_accuracy", "test_balanced_accuracy", "test_accuracy",
           "best_epoch", "seconds"]


def landscape_stack(files: list[Path], h: int, w: int):
    """uint8 [N, 1, h, w]: each image turned landscape, then stretched to h x w."""
    import numpy as np

    from defect_nas.data.imageio import decode_image, fit, to_gray

    out = np.empty((len(files), 1, h, w), np.uint8)
    for i, f in enumerate(files):
        a = decode_image(f)
        a = to_gray(a) if a.ndim == 3 else a
        out[i, 0] = fit(a.T if a.shape[0] > a.shape[1] else a, (h, w), "stretch")
    return out


def train_prototype(data: str, shape: str, seed: int, epochs: int, budget: float, pool: str = "gap"):
    """The residual prototype (head ``pool``) fitted to ``budget`` and trained on ``data`` at ``shape``:
    (dataset, split, model, training result, fvcore MACs at H x W, seconds)."""
    import dataclasses

    import torch
    from fvcore.nn import FlopCountAnalysis

    torch.set_num_threads(1)
    from defect_nas.core.budget import Budget, fit
    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.scoring import train_data
    from defect_nas.evaluators.trainer import TrainConfig, train
    from defect_nas.search_spaces.base import Task, get_space
    from defect_nas.search_spaces.build import build

    h, w = (int(v) for v in shape.split("x"))
    ds = load_dataset(data, size=64)  # labels, files and the split; pixels replaced below
    ds = dataclasses.replace(ds, images=torch.from_numpy(landscape_stack([ds.root / p for p in ds.paths], h, w)))
    split = make_split(ds, seed=0)
    side = round((h * w) ** 0.5)
    proto = get_space("residual").prototypes(Task(ds.channels, side, ds.num_classes))["resnet-proto"]
    spec = fit(dataclasses.replace(proto, head=dataclasses.replace(proto.head, pool=pool)), Budget(budget))
    torch.manual_seed(seed)
    model = build(spec)
    with torch.no_grad():
        fca = FlopCountAnalysis(model.eval(), torch.zeros(1, ds.channels, h, w))
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        macs = int(fca.total())
    t = time.time()
    result = train(model, train_data(ds, split), TrainConfig(epochs=epochs, seed=seed, sampler="balanced"))
    return ds, split, model, result, macs, round(time.time() - t, 1)


def run_one(data: str, shape: str, seed: int, epochs: int, budget: float) -> dict:
    import json

    from defect_nas.evaluators.trainer import evaluate

    ds, split, model, result, macs, seconds = train_prototype(data, shape, seed, epochs, budget)
    m = evaluate(model, ds.images[split.test], ds.labels[split.test], ds.class_names)
    recall = {k: round(v, 1) for k, v in zip(ds.class_names, m.per_class_accuracy)}
    return {"dataset": Path(data).name, "shape": shape, "seed": seed, "epochs": epochs, "macs": macs,
            "val_balanced_accuracy": round(result.val_accuracy, 2),
            "test_balanced_accuracy": round(m.balanced_accuracy, 2), "test_accuracy": round(m.accuracy, 2),
            "best_epoch": result.best_epoch, "recall": json.dumps(recall), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--shapes", nargs="+", default=["211x211", "140x318", "176x424"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--budget-flops", type=float, default=100e6)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.out / "line_shape_runs.csv"
    done = done_keys(runs, NUMERIC, ["dataset", "shape", "seed", "epochs"])
    jobs = [(d, s, seed, args.epochs, args.budget_flops) for seed in args.seeds for s in args.shapes
            for d in args.data]
    run_jobs(run_one, [j for j in jobs if (Path(j[0]).name, *j[1:4]) not in done], runs, FIELDS, args.jobs)
    cols = ["macs", "val_balanced_accuracy", "test_balanced_accuracy", "test_accuracy", "seconds"]
    write_seed_means(read_runs(runs, NUMERIC), ["dataset", "shape", "epochs"], cols, args.out, "line_shape")

if __name__ == "__main__":
    main()
