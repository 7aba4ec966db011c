"""VGG16 teacher on NEU: ImageNet-initialised convs vs scratch, same budget (Kim et al.'s comparison).

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/teacher_transfer.py [--epochs 8 --input-size 128]

Prints a table and writes results/benchmarks/teacher_transfer.{csv,json}. Trained teachers land in
the teacher cache, so a later search on the same split reuses the ImageNet one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from defect_nas.data import load_dataset, make_split  # noqa: E402
from defect_nas.evaluators.runtime import Runtime  # noqa: E402
from defect_nas.evaluators.teacher import TeacherConfig, ensure_teacher  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--inits", nargs="+", default=["imagenet", "scratch"])
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    Runtime(threads=args.threads).apply()
    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    rows = []
    for init in args.inits:
        cfg = TeacherConfig(init=init, epochs=args.epochs, input_size=args.input_size)
        t = ensure_teacher(ds, split, cfg)
        rows.append({"teacher": "vgg16", "init": init, "provenance": t.provenance, "epochs": args.epochs,
                     "input_size": args.input_size, "val_accuracy": t.val_accuracy, "test_accuracy": t.test_accuracy,
                     "minutes": t.seconds / 60, "from_cache": t.from_cache})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "teacher_transfer.csv", index=False)
    (out / "teacher_transfer.json").write_text(json.dumps(
        {"rows": rows, "split": split.sizes(), "dataset_fingerprint": ds.fingerprint,
         "environment": environment(0)}, indent=2, default=str))


if __name__ == "__main__":
    main()
