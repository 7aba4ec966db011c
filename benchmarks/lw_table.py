"""Huang et al.'s Table 4 on NEU: LW@0.35 trained to convergence, beside MobileNetV2@0.35 and
ShuffleNetV2@0.5 trained by the same recipe, on Huang's split and on ours.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/lw_table.py \
        [--models lw@0.35 mobilenetv2-0.35 shufflenetv2-0.5] [--splits huang ours] [--seeds 0 1 2] \
        [--epochs 100] [--input-size 200] [--jobs 2] [--device cuda]
    .venv/bin/python benchmarks/lw_table.py --only table     # table + CPU latency, on a quiet machine

Splits (both stratified and seeded by ``make_split``, seed 0): ``huang`` is their 150 training /
150 test images per class, of which 30 of the 150 training ones are held out for choosing the
epoch (the test half is never looked at before the end); ``ours`` is the reference runs' split
(200 / 40 / 60 per class). Recipe: the final phase's (AdamW 2e-3 with cosine decay, label
smoothing 0.1, the 8 flips/rotations, an EMA of the weights over 5 epochs) for a fixed number of
epochs, no plateau stop, so every row trained the same epochs; test accuracy of the
best-validation epoch. Each training runs in its own 1-thread process (``--jobs`` at once) and is
appended to ``results/benchmarks/lw_table_runs.csv`` as it ends, so the benchmark resumes where it
stopped and can be split across sessions. The table step adds MACs, parameters and ONNX Runtime
fp32 latency (batch 1, 1 thread, median of 50) of each model, and writes
``results/benchmarks/lw_table.{csv,json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from resumable import read_runs, run_jobs  # noqa: E402

from defect_nas.core.files import read_csv_rows, write_csv, write_json  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402

SPLITS = {"huang": {"test": 150, "val": 30}, "ours": {}}  # make_split keywords
MODELS = ("lw@0.35", "mobilenetv2-0.35", "shufflenetv2-0.5")
FIELDS = ["model", "split", "input_size", "epochs", "seed", "train", "val", "test", "params", "macs",
          "val_accuracy", "test_accuracy", "best_epoch", "train_seconds", "device", "val_by_epoch"]
KEY = ("model", "split", "input_size", "epochs", "seed")
PAPER = "Huang et al. 2020, Table 4: LW@0.35 100% on NEU (150/150 split, heavy augmentation)"


def make_model(name: str, classes: int, input_size: int):
    """LW@0.35 is the LW space's prototype (Huang's Table 2 at width 0.35); the others are baselines."""
    from defect_nas.nas.baselines import BASELINES, baseline_model
    from defect_nas.search_spaces.base import Task, get_space
    from defect_nas.search_spaces.build import build

    if name in BASELINES:
        return baseline_model(name, 1, classes)
    return build(get_space("lw").prototypes(Task(1, input_size, classes))[name])


def one(model_name: str, split_name: str, input_size: int, epochs: int, seed: int, device: str = "cpu") -> dict:
    """One training in a worker process: 1 thread on the CPU, or on ``device``."""
    import torch

    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.run import train_module
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.evaluators.trainer import TrainConfig
    from defect_nas.measure.flops import fvcore_macs

    runtime = Runtime(device=device, threads=1).apply()
    ds = load_dataset("neu")
    split = make_split(ds, seed=0, **SPLITS[split_name])
    torch.manual_seed(seed)
    model = make_model(model_name, len(ds.class_names), input_size)
    macs = fvcore_macs(model, 1, input_size)
    cfg = TrainConfig(epochs=epochs, input_size=input_size, ema_epochs=5.0, seed=seed)
    s = train_module(model, ds, split, cfg, runtime=runtime)
    sizes = split.sizes()
    by_epoch = {h["epoch"]: round(h["val_accuracy"], 3) for h in s["history"]}
    return {"model": model_name, "split": split_name, "input_size": input_size, "epochs": epochs, "seed": seed,
            "train": sizes["train"], "val": sizes["val"], "test": sizes["test"],
            "params": sum(p.numel() for p in model.parameters()), "macs": macs,
            "val_accuracy": s["val_accuracy"], "test_accuracy": s["test_accuracy"], "best_epoch": s["best_epoch"],
            "train_seconds": round(s["train_seconds"], 1), "device": runtime.device,
            "val_by_epoch": json.dumps(by_epoch)}


def latencies(models: list[str], classes: int, input_size: int) -> dict[str, float]:
    """ONNX Runtime fp32, batch 1, 1 thread, median of 50 (seeded random weights: speed does not
    depend on them)."""
    import torch

    from defect_nas.deploy.onnx import export_onnx
    from defect_nas.measure.latency import measure_onnx_file

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            torch.manual_seed(0)
            m = make_model(name, classes, input_size).eval()
            path = export_onnx(m, (1, input_size, input_size), Path(tmp) / "m.onnx")
            r = measure_onnx_file(path, (1, input_size, input_size), batch_size_throughput=None, warmup=10,
                                  repeats=50, threads=1)
            out[name] = round(r.latency_ms, 3)
    return out


def write_table(out: Path) -> pd.DataFrame:
    df = read_runs(out / "lw_table_runs.csv",
                   ("test_accuracy", "val_accuracy", "params", "macs", "train_seconds", "input_size"))
    if df.empty:
        return df
    group = ["model", "split", "input_size", "epochs"]
    table = df.groupby(group, sort=False).agg(
        seeds=("seed", "count"), test_mean=("test_accuracy", "mean"), test_std=("test_accuracy", "std"),
        test_min=("test_accuracy", "min"), params=("params", "first"), macs=("macs", "first"),
        train_seconds_median=("train_seconds", "median"),
        device=("device", lambda d: "+".join(sorted(set(d))))).reset_index()  # every device its seeds ran on
    sizes = sorted(set(table.input_size))
    lat = {s: latencies(list(dict.fromkeys(table.model)), 6, int(s)) for s in sizes}
    table["latency_ms_onnx_1t"] = [lat[s][m] for m, s in zip(table.model, table.input_size)]
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    write_csv(out / "lw_table.csv", rows)
    split_sizes = {s: {k: int(v) for k, v in df[df.split == s][["train", "val", "test"]].iloc[0].items()}
                   for s in dict.fromkeys(df.split)}
    write_json(out / "lw_table.json", {
        "table": rows, "paper": PAPER, "splits": split_sizes,
        "protocol": {"train": "TrainConfig defaults (AdamW 2e-3, cosine, label smoothing 0.1, 8 views), EMA of "
                              "the weights over 5 epochs, fixed epochs, no plateau stop, 1 thread",
                     "target": "test accuracy of the best-validation epoch",
                     "latency": "ONNX Runtime fp32, batch 1, 1 thread, median of 50, seeded random weights"},
        "runs": df.drop(columns=["val_by_epoch"]).to_dict(orient="records"),
        "environment": environment(None)})
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--input-size", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the trainings on the GPU, --jobs of them at once")
    ap.add_argument("--only", choices=["table"])
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv = out / "lw_table_runs.csv"
    if args.only != "table":
        have = {tuple(r[k] for k in KEY) for r in read_csv_rows(runs_csv)}
        jobs = [(m, sp, args.input_size, args.epochs, seed) for seed in args.seeds for sp in args.splits
                for m in args.models if (m, sp, str(args.input_size), str(args.epochs), str(seed)) not in have]
        run_jobs(one, jobs, runs_csv, FIELDS, args.jobs, (args.device,))
    table = write_table(out)
    if not table.empty:
        print(PAPER)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
