"""Does distillation from the VGG16 teacher help small students on NEU? Same epochs, same split, 3 seeds.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/kd_effect.py \
        [--archs lw/lw@0.35 residual/resnet-proto] [--kd none kl l2] [--seeds 0 1 2] [--epochs 20 --input-size 100]

Prints per-run rows and a mean +- std table; writes results/benchmarks/kd_effect.{csv,json}.
The teacher is the cached ImageNet-initialised VGG16 (trained first if missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from defect_nas.evaluators.data import load_dataset, make_split  # noqa: E402
from defect_nas.evaluators.run import train_spec  # noqa: E402
from defect_nas.evaluators.runinfo import environment  # noqa: E402
from defect_nas.evaluators.runtime import Runtime  # noqa: E402
from defect_nas.evaluators.teacher import TeacherConfig, ensure_teacher  # noqa: E402
from defect_nas.evaluators.trainer import TrainConfig  # noqa: E402
from defect_nas.search_spaces.base import Task, get_space  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", nargs="+", default=["lw/lw@0.35", "residual/resnet-proto"])
    ap.add_argument("--kd", nargs="+", default=["none", "kl", "l2"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--input-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    Runtime(threads=args.threads).apply()
    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    teacher = ensure_teacher(ds, split, TeacherConfig())
    print(f"teacher: {teacher.provenance}, test accuracy {teacher.test_accuracy:.2f}%", flush=True)
    rows = []
    for arch in args.archs:
        space, _, name = arch.partition("/")
        spec = get_space(space).prototypes(Task(1, args.input_size, len(ds.class_names)))[name]
        for kd in args.kd:
            for seed in args.seeds:
                cfg = TrainConfig(epochs=args.epochs, input_size=args.input_size, kd=kd, seed=seed)
                r = train_spec(spec, ds, split, cfg, teacher if kd != "none" else None, latency=False)
                s = r.summary
                rows.append({"arch": name, "kd": kd, "seed": seed, "test_accuracy": s["test_accuracy"],
                             "val_accuracy": s["val_accuracy"], "macs": s["macs"], "params": s["params"],
                             "train_seconds": s["train_seconds"]})
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    table = (df.groupby(["arch", "kd"], sort=False)["test_accuracy"].agg(["mean", "std", "count"]).reset_index())
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "kd_effect.csv", index=False)
    (out / "kd_effect.json").write_text(json.dumps({
        "summary": table.to_dict(orient="records"), "runs": rows,
        "teacher": {"provenance": teacher.provenance, "test_accuracy": teacher.test_accuracy,
                    "config": teacher.config.to_dict()},
        "train_config": {"epochs": args.epochs, "input_size": args.input_size, "kd_alpha": 0.5,
                         "kd_temperature": 4.0, "views": "8 flips/rotations"},
        "split": split.sizes(), "dataset_fingerprint": ds.fingerprint, "environment": environment(None),
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
