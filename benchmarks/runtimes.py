"""Which runtime should a user of this CPU deploy on? The reference winners and ResNet-50 in eager
PyTorch, ONNX Runtime, OpenVINO and zentorch (AMD ZenDNN through torch.compile), side by side in one
process: batch-1 latency and batch-64 throughput at 1 and 2 threads, and each speed-up against
ResNet-50 in the same runtime and in ONNX Runtime. Then the labels OpenVINO gives the recorded NEU
test images against ONNX Runtime's, for each winner.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/runtimes.py \
        [--runs results/neu-100m results/neu-target-99.5] [--repeats 5] [--runtimes eager onnx openvino zentorch]

Every number is a median of ``--repeats`` timed runs after 2 warm-up runs; run it on an idle machine.
OpenVINO runs in f32 (its CPU plugin would pick bf16 on CPUs that have it). Writes
``results/benchmarks/runtimes.{csv,json}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import pandas as pd

from defect_nas.core.files import write_csv, write_json
from defect_nas.core.runfolder import RunFolder
from defect_nas.data.preprocess import model_input, recorded_test
from defect_nas.deploy.model import load_model
from defect_nas.deploy.runtimes import predictions
from defect_nas.measure.latency import measure_latency
from defect_nas.measure.runinfo import environment
from defect_nas.nas.baselines import baseline_model

OUT = Path("results/benchmarks")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["results/neu-100m", "results/neu-target-99.5", "results/neu-100m-lw"])
    ap.add_argument("--runtimes", nargs="+", default=["eager", "onnx", "openvino", "zentorch"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    missing = [r for r in args.runtimes if r in ("openvino", "zentorch") and not importlib.util.find_spec(r)]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)}; pip install 'defect-nas[{missing[0]}]'")
    models = []
    for run in map(Path, args.runs):
        model, spec, labels = load_model(RunFolder(run).winner)
        models.append((run.name, model, spec, labels, run))
    _, _, spec0, labels0, _ = models[0]
    models.append(("resnet50", baseline_model("resnet50", spec0.in_channels, len(labels0)).eval(), spec0, labels0,
                   None))
    rows = []
    for threads in args.threads:
        for name, model, spec, _, _ in models:
            shape = (spec.in_channels, spec.input_size, spec.input_size)
            for runtime in args.runtimes:
                t0 = time.perf_counter()
                r = measure_latency(model, shape, backend=runtime, batch_size_throughput=args.batch, warmup=2,
                                    repeats=args.repeats, threads=threads)
                rows.append({"model": name, "runtime": runtime, "threads": threads, "latency_ms": r.latency_ms,
                             "throughput_img_s": r.throughput_img_s, "batch": args.batch,
                             "max_abs_diff": r.onnx_max_abs_diff, "cpu": r.cpu_model,
                             "seconds": time.perf_counter() - t0})
                print(f"{threads} thread(s) {name:>18} {runtime:>9}: {r.latency_ms:8.3f} ms, "
                      f"{r.throughput_img_s:8.1f} img/s", flush=True)
    df = pd.DataFrame(rows)
    ref = df[df.model == "resnet50"].set_index(["runtime", "threads"])
    for i, r in df.iterrows():
        same = ref.loc[(r.runtime, r.threads)]
        ort = ref.loc[("onnx", r.threads)] if ("onnx", r.threads) in ref.index else None
        df.loc[i, "x_resnet50_same_runtime"] = r.throughput_img_s / same.throughput_img_s
        df.loc[i, "x_resnet50_latency_same_runtime"] = same.latency_ms / r.latency_ms
        if ort is not None:
            df.loc[i, "x_resnet50_onnxruntime"] = r.throughput_img_s / ort.throughput_img_s
    parity = []
    if "openvino" in args.runtimes:
        import tempfile

        from defect_nas.deploy.onnx import export_onnx
        from defect_nas.deploy.openvino import export_openvino

        for name, model, spec, labels, run in models:
            if run is None:
                continue
            rec = recorded_test(RunFolder(run).split_source(), spec.input_size, labels)
            x = model_input(rec.x8).numpy()
            with tempfile.TemporaryDirectory() as tmp:
                onnx = export_onnx(model, (spec.in_channels, spec.input_size, spec.input_size),
                                   Path(tmp) / "model.onnx")
                xml = export_openvino(onnx, Path(tmp) / "model.xml")
                a, b = predictions(onnx, x), predictions(xml, x, "openvino")
            truth = rec.truth.numpy()
            parity.append({"model": name, "test_images": len(x), "labels_equal": int((a == b).sum()),
                           "onnxruntime_accuracy": 100 * float((a == truth).mean()),
                           "openvino_accuracy": 100 * float((b == truth).mean())})
    print(df.drop(columns=["cpu", "seconds", "max_abs_diff"]).round(2).to_string(index=False))
    for p in parity:
        print(f"{p['model']}: OpenVINO labels equal to ONNX Runtime's on {p['labels_equal']} of {p['test_images']} "
              f"test images ({p['openvino_accuracy']:.2f}% vs {p['onnxruntime_accuracy']:.2f}%)")
    OUT.mkdir(parents=True, exist_ok=True)
    write_csv(OUT / "runtimes.csv", df.to_dict("records"))
    write_json(OUT / "runtimes.json", {"rows": df.to_dict("records"), "openvino_parity": parity,
                                       "repeats": args.repeats, "warmup": 2, "batch": args.batch,
                                       "runs": args.runs, "environment": environment()})


if __name__ == "__main__":
    main()
