"""How close does a winner run to this CPU's limit? ONNX Runtime fp32 and int8, side by side with ResNet-50.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/throughput.py results/neu-100m \
        [results/neu-100m-latency ...] [--repeats 20]

For each run's winner (named by its run folder; the first run's input size and training images are
used for ResNet-50 and the GEMM) and ResNet-50 (torchvision, same input and classes; its weights do not change
its speed) at the winner's input size: batch 1 and batch 64, 1 and 2 threads, fp32 (the exported
``model.onnx``) and int8 (``export --format onnx-int8``'s quantization, calibrated on the run's
training images): images/s, achieved GFLOP/s (2 x MACs x img/s) and its fraction of the machine's
measured peak, a 1024^3 GEMM through the same runtime and threads (fp32 MatMul; int8
MatMulInteger, uint8 x int8). Medians of ``--repeats`` timed runs after 5 warm-up runs, all in one
process, one after the other; run it on an idle machine. Writes ``results/benchmarks/throughput.{csv,json}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch  # noqa: E402

from defect_nas.core.cost import cost  # noqa: E402
from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.core.spec import ArchSpec  # noqa: E402
from defect_nas.deploy.model import load_model, run_images  # noqa: E402
from defect_nas.deploy.onnx import export_onnx  # noqa: E402
from defect_nas.deploy.quantize import quantize_int8  # noqa: E402
from defect_nas.measure.flops import fvcore_macs  # noqa: E402
from defect_nas.measure.latency import cpu_model, measure_onnx_file  # noqa: E402
from defect_nas.measure.peak import gemm_model, peak_gflops  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402
from defect_nas.nas.baselines import baseline_model  # noqa: E402
from defect_nas.search_spaces.build import build  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders whose winners to measure side by side")
    ap.add_argument("--arch", action="append", default=[], metavar="NAME=ARCH.json",
                    help="also an architecture not exported (e.g. a rung-2 candidate), seeded random weights: "
                    "speed does not depend on them")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="results/benchmarks/throughput")
    args = ap.parse_args()
    models, macs, shape, calibration, labels = {}, {}, None, None, None
    for run in map(Path, args.runs):
        model, spec, run_labels = load_model(run / "winner")
        if shape is None:
            shape = (spec.in_channels, spec.input_size, spec.input_size)
            calibration, _, _ = run_images(run, spec, run_labels)
            labels = run_labels
        elif (spec.in_channels, spec.input_size, spec.input_size) != shape:
            raise SystemExit(f"{run}: input {spec.input_size} px differs from the first run's; compare like with like")
        if run.name in models or run.name == "resnet50":
            raise SystemExit(f"{run}: two models would be named {run.name!r}; give runs distinct folder names")
        models[run.name], macs[run.name] = model, cost(spec).macs
    for item in args.arch:
        name, _, path = item.partition("=")
        spec = ArchSpec.from_json(Path(path).read_text())
        if (spec.in_channels, spec.input_size, spec.input_size) != shape or name in models:
            raise SystemExit(f"--arch {item}: another input than the runs', or a name already used")
        torch.manual_seed(0)
        models[name], macs[name] = build(spec).eval(), cost(spec).macs
    resnet = baseline_model("resnet50", shape[0], len(labels)).eval()
    models["resnet50"], macs["resnet50"] = resnet, fvcore_macs(resnet, shape[0], shape[1])
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        files = {}
        for name, m in models.items():
            files[name, "fp32"] = export_onnx(m, shape, t / f"{name}.onnx")
            files[name, "int8"] = quantize_int8(files[name, "fp32"], calibration, t / f"{name}.int8.onnx")
        for precision in ("fp32", "int8"):
            g = gemm_model(t / f"gemm-{precision}.onnx", precision)
            for threads in (1, 2):
                peaks[precision, threads] = peak_gflops(precision, threads, model=g)
        for (name, precision), path in files.items():
            for threads in (1, 2):
                for batch in (1, 64):
                    r = measure_onnx_file(path, shape, batch_size_throughput=batch, repeats=args.repeats,
                                          threads=threads)
                    img_s = r.throughput_img_s
                    gflops = 2 * macs[name] * img_s / 1e9
                    rows.append({"model": name, "precision": precision, "threads": threads, "batch": batch,
                                 "macs": macs[name], "img_s": round(img_s, 1),
                                 "ms_per_batch": round(1e3 * batch / img_s, 3), "gflops": round(gflops, 1),
                                 "peak_gflops": round(peaks[precision, threads], 1),
                                 "fraction_of_peak": round(gflops / peaks[precision, threads], 3)})
    df = pd.DataFrame(rows)
    for _, g in df.groupby(["precision", "threads", "batch"]):
        ref = g[g.model == "resnet50"].img_s.iloc[0]
        for i in g.index[g.model != "resnet50"]:
            df.loc[i, "x_resnet50"] = round(df.loc[i, "img_s"] / ref, 1)
    print(f"{cpu_model()}; peak GFLOP/s (1024^3 GEMM, ONNX Runtime): "
          + ", ".join(f"{p} {n}t {v:.0f}" for (p, n), v in peaks.items()))
    print(df.to_string(index=False))
    out = Path(args.out)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    write_csv(out.with_suffix(".csv"), rows)
    write_json(out.with_suffix(".json"), {
        "command": " ".join(["python", *sys.argv]), "cpu": cpu_model(), "input": list(shape),
        "peak_gflops": {f"{p}_{n}t": round(v, 1) for (p, n), v in peaks.items()}, "rows": rows,
        "environment": environment(0)})


if __name__ == "__main__":
    main()
