"""Does a search end inside ``--time-budget`` with a winner on data nobody tuned for?

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/budget_wall.py \
        [--datasets imbalanced-varsize small-64] [--time-budget 20m] [--teacher vgg16]

Builds each dataset from NEU in a temporary folder (nothing is copied into the repository):

- ``imbalanced-varsize``: a defect-free class ``ok`` (NEU's 300 rolled-in scale images) and the five
  other classes with 25 images each (71% defect-free), every image a seeded random crop of
  120-200 x 120-200 px (sizes vary, most are not square): the case where every candidate once
  learned to answer "no defect".
- ``small-64``: all 1,800 images downscaled to 64 x 64 px.

Then runs README's command on it, ``defect-nas search --budget-flops 100e6 --dataset DIR
--time-budget T`` (with ``--teacher``: a teacher not cached is trained inside the budget), times
the whole process, and reads its ``summary.json``: the wall time against the budget, whether a
winner was exported, the metric it was chosen on, and the time each phase took. Writes
``results/benchmarks/budget_wall.{csv,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.data.registry import find_registered  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def neu_images(neu: Path, cls: str) -> list[Path]:
    return sorted((neu / cls).glob("*.bmp")) or sorted(p for p in (neu / cls).iterdir() if p.is_file())


def imbalanced_varsize(neu: Path, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls in NEU_CLASSES:
        name, files = ("ok", neu_images(neu, cls)) if cls == "rolled-in_scale" else (cls, neu_images(neu, cls)[:25])
        (out / name).mkdir(parents=True)
        for f in files:
            im = Image.open(f).convert("L")
            w, h = (int(v) for v in rng.integers(120, 201, size=2))
            x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
            im.crop((x, y, x + w, y + h)).save(out / name / f"{f.stem}.png")


def small_64(neu: Path, out: Path, seed: int = 0) -> None:
    for cls in NEU_CLASSES:
        (out / cls).mkdir(parents=True)
        for f in neu_images(neu, cls):
            Image.open(f).convert("L").resize((64, 64), Image.BILINEAR).save(out / cls / f"{f.stem}.png")


BUILDERS = {"imbalanced-varsize": imbalanced_varsize, "small-64": small_64}


def budget_seconds(text: str) -> float:
    unit = {"s": 1, "m": 60, "h": 3600}[text[-1]] if text[-1] in "smh" else 1
    return float(text.rstrip("smh")) * unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    ap.add_argument("--time-budget", default="20m")
    ap.add_argument("--teacher", default="vgg16", help="--teacher for the search (none: no teacher)")
    ap.add_argument("--out", default="results/benchmarks/budget_wall")
    args = ap.parse_args()
    neu = find_registered("neu")
    budget = budget_seconds(args.time_budget)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"  # a teacher is trained inside the budget, as on a user's first run
        runs = Path(tmp) / "runs"  # never inside a dataset folder (search refuses that now; it cost a final phase)
        for name in args.datasets:
            data = Path(tmp) / name
            BUILDERS[name](neu, data)
            cmd = [sys.executable, "-m", "defect_nas", "search", "--budget-flops", "100e6", "--dataset", str(data),
                   "--time-budget", args.time_budget, "--teacher", args.teacher, "--results", str(runs), "--run", name,
                   "--json"]
            start = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DEFECT_NAS_CACHE": str(cache)})
            wall = time.perf_counter() - start
            summary_file = runs / name / "summary.json"
            s = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
            w = s.get("winner") or {}
            t = s.get("timeline") or {}
            row = {"dataset": name, "images": sum(1 for _ in data.rglob("*.png")), "budget_s": budget,
                   "wall_s": round(wall, 1), "over_budget_pct": round(100 * (wall / budget - 1), 1),
                   "exit": p.returncode, "winner": w.get("name"), "metric": w.get("metric"),
                   "test_mean": w.get("test_accuracy_mean"), "input_size": w.get("input_size"),
                   "macs": w.get("macs"), "retrained": w.get("retrained"), "warning": w.get("warning"),
                   "notes": " | ".join(s.get("notes") or []),
                   "trials": sum((s.get("trial_counts") or {}).values()),
                   **{f"{k}_s": round(t[f"{k}_s"], 1) for k in ("setup", "explore", "promote", "final", "baselines",
                                                                 "export") if t.get(f"{k}_s") is not None}}
            rows.append({**row, "stderr_tail": p.stderr[-4000:]})  # what the run said, kept for the JSON
            print(row, flush=True)
            print(p.stderr[-4000:], flush=True)
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), [{k: v for k, v in r.items() if k != "stderr_tail"} for r in rows])
    write_json(out.with_suffix(".json"), {"command": " ".join(["python", *sys.argv]), "rows": rows,
                                          "environment": environment(0)})


if __name__ == "__main__":
    main()
