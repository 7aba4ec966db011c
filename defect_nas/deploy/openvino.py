"""OpenVINO export of a model folder: ``model.xml`` (fp32, converted from the checked ``model.onnx``)
and ``model.int8.xml`` (NNCF post-training quantization, calibrated on the run's training images),
the runtime Intel inspection PCs are expected to have (``pip install 'defect-nas[openvino]'``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defect_nas.core.errors import DefectNasError


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise DefectNasError("--format openvino needs OpenVINO: pip install 'defect-nas[openvino]'") from None
    return ov


def export_openvino(onnx_path: Path, out: Path) -> Path:
    """model.xml (+ .bin) in fp32: OpenVINO would halve the weights to fp16 by default, which the
    recorded metrics were not scored in."""
    ov = _openvino()
    ov.save_model(ov.convert_model(str(onnx_path)), str(out), compress_to_fp16=False)
    return out


def quantize_openvino(xml: Path, calibration: np.ndarray, out: Path) -> Path:
    """model.int8.xml: NNCF's default post-training quantization (per-channel weights, activations
    ranged on ``calibration``, preprocessed training images)."""
    ov = _openvino()
    try:
        import nncf
    except ImportError:
        raise DefectNasError("--format openvino-int8 needs NNCF: pip install 'defect-nas[openvino]'") from None
    model = ov.Core().read_model(str(xml))
    data = nncf.Dataset([calibration[i:i + 1].astype(np.float32) for i in range(len(calibration))])
    quantized = nncf.quantize(model, data, subset_size=len(calibration))
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out
