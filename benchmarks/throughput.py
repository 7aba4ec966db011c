"""How close does a winner run to this CPU's limit? ONNX Runtime fp32 and int8, side by side with ResNet-50.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/throughput.py results/neu-100m [--repeats 20]

For the run's winner and ResNet-50 (torchvision, same input and classes; its weights do not change
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

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from defect_nas.core.cost import cost  # noqa: E402
from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.evaluators.flops import fvcore_macs  # noqa: E402
from defect_nas.evaluators.latency import cpu_model, export_onnx, measure_onnx_file, ort_session  # noqa: E402
from defect_nas.evaluators.quantize import quantize_int8  # noqa: E402
from defect_nas.evaluators.runinfo import environment  # noqa: E402
from defect_nas.nas.baselines import baseline_model  # noqa: E402
from defect_nas.nas.export import load_model, run_images  # noqa: E402

GEMM = 1024


def gemm_model(path: Path, precision: str) -> Path:
    """A one-node graph: (GEMM x GEMM) @ (GEMM x GEMM), constant right-hand side."""
    rng = np.random.default_rng(0)
    if precision == "fp32":
        b = helper.make_tensor("B", TensorProto.FLOAT, [GEMM, GEMM], rng.standard_normal((GEMM, GEMM)).astype(
            np.float32).ravel())
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        inits = [b]
    else:
        b = helper.make_tensor("B", TensorProto.INT8, [GEMM, GEMM], rng.integers(-128, 127, GEMM * GEMM).astype(
            np.int8).ravel())
        za = helper.make_tensor("za", TensorProto.UINT8, [], [128])
        zb = helper.make_tensor("zb", TensorProto.INT8, [], [0])
        node = helper.make_node("MatMulInteger", ["A", "B", "za", "zb"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        inits = [b, za, zb]
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_type, [GEMM, GEMM])],
                              [helper.make_tensor_value_info("Y", y_type, [GEMM, GEMM])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def peak_gflops(path: Path, precision: str, threads: int) -> float:
    sess = ort_session(path, threads)
    a = (np.random.default_rng(1).standard_normal((GEMM, GEMM)).astype(np.float32) if precision == "fp32"
         else np.random.default_rng(1).integers(0, 255, (GEMM, GEMM)).astype(np.uint8))
    seconds = Timer("run()", globals={"run": lambda: sess.run(None, {"A": a})}).blocked_autorange(min_run_time=1).median
    return 2 * GEMM**3 / seconds / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="results/benchmarks/throughput")
    args = ap.parse_args()
    run = Path(args.run)
    model, spec, labels = load_model(run / "winner")
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    calibration, _, _ = run_images(run, spec, labels)
    resnet = baseline_model("resnet50", spec.in_channels, len(labels)).eval()
    macs = {"winner": cost(spec).macs, "resnet50": fvcore_macs(resnet, spec.in_channels, spec.input_size)}
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        files = {}
        for name, m in (("winner", model), ("resnet50", resnet)):
            files[name, "fp32"] = export_onnx(m, shape, t / f"{name}.onnx")
            files[name, "int8"] = quantize_int8(files[name, "fp32"], calibration, t / f"{name}.int8.onnx")
        for precision in ("fp32", "int8"):
            g = gemm_model(t / f"gemm-{precision}.onnx", precision)
            for threads in (1, 2):
                peaks[precision, threads] = peak_gflops(g, precision, threads)
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
        w = g[g.model == "winner"].img_s.iloc[0] / g[g.model == "resnet50"].img_s.iloc[0]
        df.loc[g.index[g.model == "winner"], "x_resnet50"] = round(w, 1)
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
