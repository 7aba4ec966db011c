"""Inference sessions of an exported ONNX file in the runtimes a line PC may have: ONNX Runtime (a
dependency) and OpenVINO (``pip install 'defect-nas[openvino]'``). numpy in, numpy out, no torch, so
the stand-alone predictor and the benchmarks open a model the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from defect_nas.core.errors import DefectNasError

RUNTIMES = ("onnxruntime", "openvino")
INPUT_NAME = "input"  # the exported graph's input (deploy.onnx writes it)


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """ONNX Runtime CPU session; ``threads`` sets intra-op threads (inter-op stays 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def openvino_model(path: str | Path, threads: int | None = None) -> Any:
    """An OpenVINO model compiled for the CPU (``path``: its .xml, or an .onnx it reads directly)."""
    try:
        import openvino as ov
    except ImportError:
        raise DefectNasError("OpenVINO is not installed: pip install 'defect-nas[openvino]', "
                             "or choose --runtime onnxruntime") from None
    # f32: on CPUs with bf16 units OpenVINO would otherwise compute in bf16, which the metrics were not scored in
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(str(path), "CPU", config)


def logits_fn(path: str | Path, runtime: str = "onnxruntime", threads: int | None = None
              ) -> Callable[[np.ndarray], np.ndarray]:
    """A function float32 [N, C, H, W] -> logits [N, classes] running ``path`` in ``runtime``."""
    if runtime == "onnxruntime":
        sess = ort_session(path, threads)
        return lambda x: sess.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
    if runtime == "openvino":
        compiled = openvino_model(path, threads)
        out = compiled.output(0)
        return lambda x: np.asarray(compiled(np.ascontiguousarray(x, dtype=np.float32))[out])
    raise DefectNasError(f"--runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")


def predictions(path: str | Path, x: np.ndarray, runtime: str = "onnxruntime", threads: int | None = None
                ) -> np.ndarray:
    """Class indices ``runtime`` predicts for model inputs ``x`` (float32 [N, C, H, W]), in batches of 64."""
    run = logits_fn(path, runtime, threads)
    return np.concatenate([run(b).argmax(1) for b in np.array_split(x, max(1, int(np.ceil(len(x) / 64))))])
