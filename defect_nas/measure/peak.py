"""The CPU's measured peak through the runtime models deploy on: a 1024^3 GEMM in ONNX Runtime.

A design's achieved GFLOP/s (2 x MACs / latency) means little alone; next to what the same runtime
and threads get from a large matrix product it says how close the design runs to the hardware's
limit (narrow layers at high resolution are memory-bound and stay far below it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from defect_nas.deploy.runtimes import ort_session

GEMM = 1024


def gemm_model(path: Path, precision: str) -> Path:
    """A one-node graph: (GEMM x GEMM) @ (GEMM x GEMM), constant right-hand side; fp32 MatMul or
    int8 MatMulInteger (uint8 x int8)."""
    import onnx
    from onnx import TensorProto, helper

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
    # IR 8 (what opset 17 came with), not the onnx package's newest: an onnx newer than the installed
    # onnxruntime otherwise writes an IR version that runtime refuses (seen: onnx IR 14, ORT max 13)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def peak_gflops(precision: str = "fp32", threads: int = 1, min_run_time: float = 1.0,
                model: Path | None = None) -> float:
    """GFLOP/s of the GEMM (median of ``torch.utils.benchmark`` blocks) at ``threads`` threads."""
    from torch.utils.benchmark import Timer

    with tempfile.TemporaryDirectory(prefix="defect-nas-gemm-") as tmp:
        sess = ort_session(model or gemm_model(Path(tmp) / f"gemm-{precision}.onnx", precision), threads)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((GEMM, GEMM)).astype(np.float32) if precision == "fp32" else rng.integers(
        0, 255, (GEMM, GEMM)).astype(np.uint8)
    seconds = Timer("run()", globals={"run": lambda: sess.run(None, {"A": a})}).blocked_autorange(
        min_run_time=min_run_time).median
    return 2 * GEMM**3 / seconds / 1e9
