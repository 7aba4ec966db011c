"""int8 deployment: ONNX Runtime static quantization of an exported model, and its accuracy check.

Static (not dynamic) quantization, because convolutions dominate these nets and ONNX Runtime's
dynamic mode quantizes only MatMul-like ops; QDQ format, weights int8 per output channel and
activations uint8 ("U8S8", the x86 VNNI kernels' layout), activation ranges calibrated (MinMax) on
training images preprocessed exactly as training and ``predict`` see them; the first convolution
and the classifier stay fp32 (measured: see ``quantize_int8``). The quantized file is
kept only beside its fp32 source, whose accuracy it is checked against on the recorded test split.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from defect_nas.core.errors import DefectNasError
from defect_nas.deploy.runtimes import INPUT_NAME


class _Batches(CalibrationDataReader):
    """ONNX Runtime's calibration reader: the calibration images in batches of 32."""

    def __init__(self, x: np.ndarray) -> None:
        self._it = iter(np.array_split(x, max(1, len(x) // 32)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


CALIBRATIONS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}


def quantize_int8(fp32_onnx: Path, calibration: np.ndarray, out: Path, *, method: str = "minmax",
                  keep_ends_fp32: bool = True) -> Path:
    """Write ``out``, the int8 (QDQ) version of ``fp32_onnx``, its ranges calibrated by ``method``
    on ``calibration`` (float32 model inputs, N x C x H x W). ``keep_ends_fp32`` leaves the first
    convolution and the classifier in fp32: on the NEU reference winner, quantizing them too cost
    1.11 points of test accuracy whatever the calibration (MinMax on 256 or all 1,200 training
    images, entropy; percentile 0.83), keeping them cost none (``results/benchmarks/int8.*``)."""
    if calibration.ndim != 4 or len(calibration) == 0:
        raise DefectNasError(f"int8 calibration needs N x C x H x W images, got shape {calibration.shape}")
    if method not in CALIBRATIONS:
        raise DefectNasError(f"int8 calibration {method!r}: choose from {', '.join(CALIBRATIONS)}")
    with tempfile.TemporaryDirectory(prefix="defect-nas-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared))  # shape inference and folding, as the docs advise
        exclude = []
        if keep_ends_fp32:
            nodes = [n for n in onnx.load(str(prepared)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
            exclude = [nodes[0].name, nodes[-1].name]
        quantize_static(str(prepared), str(out), _Batches(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CALIBRATIONS[method], nodes_to_exclude=exclude)
    return out
