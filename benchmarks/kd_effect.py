"""What does distillation from the VGG16 teacher buy a student trained to convergence on NEU?

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/kd_effect.py \
        --arch winner=results/neu-100m/winner/arch.json --input-size 200 --epochs 60 \
        [--kd none kl] [--seeds 0 1 2] [--jobs 2] [--teacher-epochs 30 --teacher-input-size 128] [--ema 5]
    .venv/bin/python benchmarks/kd_effect.py --only table

``--arch NAME=SOURCE``: SOURCE is an ``arch.json`` or ``space/prototype`` (e.g. ``lw/lw@0.35``).
Each (arch, input size, epochs, kd, seed) is one training with the trainer's defaults and a fixed
cosine schedule (no plateau stop, so every row ran the same epochs), in its own process with one
thread (``--jobs`` at once); each finished run is appended to
``results/benchmarks/kd_converged_runs.csv`` at once, so the benchmark resumes where it stopped
and can be split across sessions. Per run: test accuracy of the best-validation epoch, and the
first epoch whose validation accuracy reached 99% (``epochs_to_99``; empty if never). ``--ema E``
trains the same rows keeping an exponential moving average of the weights (horizon E epochs;
``TrainConfig.ema_epochs``) instead of the raw weights: the final recipe's other lever. The teacher
is the cached ImageNet-initialised VGG16 of ``--teacher-epochs`` / ``--teacher-input-size``
(trained first if missing); its logits are precomputed per training image and view.
Writes ``results/benchmarks/kd_converged.{csv,json}`` (mean +- std per arch x kd).
The older 20-epoch / 100 px table stays in ``kd_effect.{csv,json}`` (made by this script as of commit 2ee8ae3).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from resumable import run_jobs, upgrade_header  # noqa: E402

from defect_nas.core.files import read_csv_rows  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402

FIELDS = ["arch", "source", "input_size", "epochs", "kd", "seed", "params", "macs", "val_accuracy", "test_accuracy",
          "best_epoch", "epochs_to_99", "train_seconds", "images_per_second", "teacher_test_accuracy",
          "val_by_epoch", "ema_epochs", "device"]
KEY = ("arch", "input_size", "epochs", "kd", "ema_epochs", "seed")
GROUP = ["arch", "input_size", "epochs", "kd", "ema_epochs"]


def resolve(source: str, input_size: int, classes: int):
    from defect_nas.core.spec import load_spec
    from defect_nas.search_spaces.base import Task, get_space

    if source.endswith(".json"):
        return load_spec(source)
    space, _, name = source.partition("/")
    return get_space(space).prototypes(Task(1, input_size, classes))[name]


def teacher_cfg(epochs: int, input_size: int, weights_file: str | None = None):
    from defect_nas.evaluators.teacher import TeacherConfig

    return TeacherConfig(epochs=epochs, input_size=input_size, weights_file=weights_file)


def one(arch: str, source: str, input_size: int, epochs: int, kd: str, ema: float | None, seed: int, t_epochs: int,
        t_size: int, device: str = "cpu", t_weights: str | None = None) -> dict:
    """One training in a worker process: 1 thread on the CPU, or on ``device``."""
    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.run import train_spec
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.evaluators.teacher import ensure_teacher
    from defect_nas.evaluators.trainer import TrainConfig

    runtime = Runtime(device=device, threads=1).apply()
    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    teacher = (ensure_teacher(ds, split, teacher_cfg(t_epochs, t_size, t_weights), log=lambda m: None)
               if kd != "none" else None)
    spec = resolve(source, input_size, len(ds.class_names))
    cfg = TrainConfig(epochs=epochs, input_size=input_size, kd=kd, ema_epochs=ema, seed=seed)
    s = train_spec(spec, ds, split, cfg, teacher, latency=False, runtime=runtime).summary
    by_epoch = {h["epoch"]: round(h["val_accuracy"], 3) for h in s["history"]}
    reach = next((e for e, v in by_epoch.items() if v >= 99.0), None)
    return {"arch": arch, "source": source, "input_size": input_size, "epochs": epochs, "kd": kd, "seed": seed,
            "params": s["params"], "macs": s["macs"], "val_accuracy": s["val_accuracy"],
            "test_accuracy": s["test_accuracy"], "best_epoch": s["best_epoch"], "epochs_to_99": reach,
            "train_seconds": round(s["train_seconds"], 1), "images_per_second": round(s["train_images_per_second"], 1),
            "teacher_test_accuracy": teacher.test_accuracy if teacher else None, "val_by_epoch": json.dumps(by_epoch),
            "ema_epochs": ema if ema is not None else "", "device": runtime.device}


def write_table(out: Path, t_epochs: int, t_size: int, notes: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(read_csv_rows(out / "kd_converged_runs.csv"))
    if df.empty:
        return df
    for c in ("test_accuracy", "val_accuracy", "epochs_to_99", "train_seconds"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["ema_epochs"] = df["ema_epochs"].fillna("")  # empty: the raw weights (rows from before EMA existed)
    g = df.groupby(GROUP, sort=False)
    table = g.agg(seeds=("seed", "count"), test_mean=("test_accuracy", "mean"), test_std=("test_accuracy", "std"),
                  test_min=("test_accuracy", "min"), epochs_to_99_median=("epochs_to_99", "median"),
                  reached_99=("epochs_to_99", "count"), train_seconds_median=("train_seconds", "median"),
                  device=("device", "first"))
    table = table.reset_index()
    table.to_csv(out / "kd_converged.csv", index=False)
    from defect_nas.evaluators.teacher import TeacherConfig

    teacher = [r.get("teacher_test_accuracy") for r in df.to_dict("records") if r.get("teacher_test_accuracy")]
    (out / "kd_converged.json").write_text(json.dumps({
        "summary": table.to_dict(orient="records"),
        "runs": df.drop(columns=["val_by_epoch"]).to_dict(orient="records"),
        "teacher": {"config": TeacherConfig(epochs=t_epochs, input_size=t_size).to_dict(),
                    "test_accuracy": float(teacher[0]) if teacher else None},
        "protocol": {"train": "TrainConfig defaults (AdamW 2e-3, cosine, label smoothing 0.1, 8 views), fixed "
                              "epochs, no plateau stop; kd: alpha 0.5, T 4 (kl); ema_epochs: horizon of the "
                              "weights' moving average kept and validated (empty: raw weights)",
                     "split": "seed-0 split 1200/240/360 (the reference runs' split)",
                     "target": "test accuracy of the best-validation epoch; epochs_to_99: first epoch with "
                               "validation accuracy >= 99%", "threads": 1},
        "notes": notes,
        "environment": environment(None),
    }, indent=2, default=str))
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", nargs="+", default=[], help="NAME=SOURCE (arch.json or space/prototype)")
    ap.add_argument("--kd", nargs="+", default=["none", "kl"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--input-size", type=int, default=200)
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--teacher-input-size", type=int, default=128)
    ap.add_argument("--ema", type=float, default=None, help="keep an EMA of the weights, horizon in epochs")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the trainings on the GPU, --jobs of them at once")
    ap.add_argument("--teacher-weights", help="the teacher's VGG16 weights file (default: found offline)")
    ap.add_argument("--only", choices=["table"])
    ap.add_argument("--note", action="append", default=[], help="a remark on how the runs went, kept in the JSON")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv = out / "kd_converged_runs.csv"
    if args.only != "table":
        upgrade_header(runs_csv, FIELDS, {"device": "cpu"})
        have = {tuple(r.get(k) or "" for k in KEY) for r in read_csv_rows(runs_csv)}
        ema = "" if args.ema is None else str(args.ema)
        jobs = []
        for item in args.arch:
            name, _, source = item.partition("=")
            for kd in args.kd:
                for seed in args.seeds:
                    key = (name, str(args.input_size), str(args.epochs), kd, ema, str(seed))
                    if key not in have:
                        jobs.append((name, source, args.input_size, args.epochs, kd, args.ema, seed))
        if any(j[4] != "none" for j in jobs):  # train (or load) the teacher once, before the workers read its cache
            from defect_nas.data import load_dataset, make_split
            from defect_nas.evaluators.runtime import Runtime
            from defect_nas.evaluators.teacher import ensure_teacher

            ds = load_dataset("neu")
            t = ensure_teacher(ds, make_split(ds, seed=0),
                               teacher_cfg(args.teacher_epochs, args.teacher_input_size, args.teacher_weights),
                               runtime=Runtime(device=args.device).apply())
            print(f"teacher: {t.provenance}, test {t.test_accuracy:.2f}%", flush=True)
        run_jobs(one, jobs, runs_csv, FIELDS, args.jobs,
                 (args.teacher_epochs, args.teacher_input_size, args.device, args.teacher_weights))
    table = write_table(out, args.teacher_epochs, args.teacher_input_size, args.note)
    if not table.empty:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
