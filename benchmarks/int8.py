"""int8 deployment of a run's winner: accuracy on the recorded test split and speed, against fp32.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/int8.py results/neu-100m \
        [--variants minmax-256 minmax-256-all8 ...] [--speed]

Each variant is an ONNX Runtime static quantization (QDQ, U8S8, per-channel weights) of the
winner's fp32 ONNX export: calibration method, number of training images calibrated on (a seeded
sample of the training part, or all of it), and ``-all8`` to quantize the first convolution and the
classifier too (by default, as ``export --format onnx-int8`` does, they stay fp32). Accuracy is
on the run's recorded test split, through ONNX Runtime for both precisions. ``--speed`` adds
batch-1 latency and batch-64 throughput at 1 and 2 threads (medians of 30 runs; run it on an idle
machine). Writes ``results/benchmarks/int8.{csv,json}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.deploy.model import load_model, run_images  # noqa: E402
from defect_nas.deploy.onnx import export_onnx  # noqa: E402
from defect_nas.deploy.quantize import quantize_int8  # noqa: E402
from defect_nas.deploy.runtimes import predictions as onnx_predictions  # noqa: E402
from defect_nas.measure.latency import measure_onnx_file  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--variants", nargs="+",
                    default=["minmax-256-all8", "minmax-all-all8", "percentile-256-all8", "entropy-256-all8",
                             "minmax-256"])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--out", default="results/benchmarks/int8")
    args = ap.parse_args()
    run = Path(args.run)
    model, spec, labels = load_model(run / "winner")
    x_train, x_test, y_test = run_images(run, spec, labels, calibration=10**9)  # all; each variant samples
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, shape, Path(tmp) / "model.onnx")
        files = {"fp32": fp32}
        rows.append({"variant": "fp32", "test_accuracy": 100 * float((onnx_predictions(fp32, x_test) == y_test).mean()),
                     "calibration_images": None, "quantize_s": None})
        for v in args.variants:
            method, n, *all8 = v.split("-")
            cal = x_train if n == "all" else x_train[np.random.default_rng(0).permutation(len(x_train))[:int(n)]]
            t = time.perf_counter()
            path = quantize_int8(fp32, cal, Path(tmp) / f"{v}.onnx", method=method, keep_ends_fp32=not all8)
            rows.append({"variant": v, "test_accuracy": 100 * float((onnx_predictions(path, x_test) == y_test).mean()),
                         "calibration_images": len(cal), "quantize_s": round(time.perf_counter() - t, 1)})
            files[v] = path
        base = rows[0]["test_accuracy"]
        for r in rows:
            r["minus_fp32_points"] = round(r["test_accuracy"] - base, 2)
        if args.speed:
            for r in rows:
                for threads in (1, 2):
                    m = measure_onnx_file(files[r["variant"]], shape, batch_size_throughput=64, repeats=30,
                                          threads=threads)
                    r[f"latency_ms_{threads}t"] = round(m.latency_ms, 3)
                    r[f"img_s_b64_{threads}t"] = round(m.throughput_img_s, 1)
    print(pd.DataFrame(rows).to_string(index=False))
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), rows)
    write_json(out.with_suffix(".json"), {"command": " ".join(["python", *sys.argv]), "run": str(run),
                                          "test_images": len(y_test), "rows": rows, "environment": environment(0)})


if __name__ == "__main__":
    main()
