"""ONNX export and the ONNX Runtime session: the deployed form of a model.

ONNX export uses PyTorch's TorchScript-based exporter (``dynamo=False``): in torch 2.14 the
default dynamo exporter needs the extra ``onnxscript`` package, the legacy one needs nothing
beyond ``onnx``. Every export is checked against the eager output with ONNX Runtime
(``CPUExecutionProvider``) at two batch sizes, so a model that exports wrongly (unsupported op,
randomness in eval, a batch axis baked in) fails loudly instead of reporting a bogus latency.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.deploy.runtimes import INPUT_NAME, ort_session

OUTPUT_NAME = "logits"


class OnnxMismatchError(DefectNasError):
    """ONNX Runtime's output differs from PyTorch's beyond tolerance (or the export failed)."""


def check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        msg = f"input_shape must be a sequence of ints, got {input_shape!r}"
        raise DefectNasError(msg) from None
    is_int = [isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape]
    if not shape or not all(is_int):
        raise DefectNasError(
            f"input_shape must be a non-empty sequence of ints (one image, no batch axis), "
            f"got {input_shape!r}"
        )
    if any(d <= 0 for d in shape):
        raise DefectNasError(f"input_shape dimensions must be positive, got {shape}")
    return tuple(int(d) for d in shape)


def eval_cpu_copy(model: nn.Module, channels_last: bool) -> nn.Module:
    """A CPU, eval-mode copy: measuring never changes the caller's model (mode, device, layout)."""
    if not isinstance(model, nn.Module):
        raise DefectNasError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    m = copy.deepcopy(model).cpu().eval()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m


def forward_checked(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward pass; a shape the model cannot take becomes a user-facing error."""
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, IndexError) as e:
        raise DefectNasError(
            f"model rejects input of shape {tuple(x.shape)} (batch, *input_shape): {e}"
        ) from e
    if not isinstance(out, torch.Tensor):
        raise DefectNasError(
            f"model must return one tensor for latency/export, got {type(out).__name__}"
        )
    return out


def verify_onnx(
    model: nn.Module,
    path: Path,
    shape: tuple[int, ...],
    atol: float,
    rtol: float,
    threads: int | None = None,
) -> tuple[Any, float]:
    """Compare ORT with eager at batch 1 and 2; return the session and the max abs diff."""
    try:
        sess = ort_session(path, threads)
    except Exception as e:  # onnxruntime raises its own exception types
        raise OnnxMismatchError(f"ONNX Runtime cannot load the exported model {path}: {e}") from e
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in (1, 2):
        x = torch.randn((batch, *shape), generator=g)
        ref = forward_checked(model, x).numpy()
        try:
            (got,) = sess.run(None, {INPUT_NAME: x.numpy()})
        except Exception as e:
            raise OnnxMismatchError(f"ONNX Runtime failed on batch {batch}: {e}") from e
        if got.shape != ref.shape:
            raise OnnxMismatchError(
                f"ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {batch}"
            )
        diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(got, ref, atol=atol, rtol=rtol):
            raise OnnxMismatchError(
                f"ONNX Runtime output differs from PyTorch at batch {batch}: max |diff| = "
                f"{diff:.3g} > atol={atol:g} + rtol={rtol:g}*|ref|"
            )
    return sess, worst


def write_onnx(model: nn.Module, shape: tuple[int, ...], path: Path, opset: int | None) -> None:
    x = torch.randn((1, *shape))
    forward_checked(model, x)  # clear error for a bad shape before the exporter's own
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if opset is not None:
        kwargs["opset_version"] = opset
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
                **kwargs,
            )
    except Exception as e:
        raise OnnxMismatchError(f"ONNX export failed: {type(e).__name__}: {e}") from e


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    *,
    opset: int | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Path:
    """Export ``model`` (eval, CPU copy) to ONNX with a dynamic batch axis and verify it.

    The file has one input ``"input"`` of shape ``(batch, *input_shape)`` and one output
    ``"logits"``. It is run with ONNX Runtime at batch 1 and 2 and compared with PyTorch; a
    difference beyond ``atol + rtol * |ref|`` raises ``OnnxMismatchError`` (file left in place
    for inspection). Returns the path.
    """
    shape = check_shape(input_shape)
    out = Path(path)
    m = eval_cpu_copy(model, channels_last=False)
    write_onnx(m, shape, out, opset)
    verify_onnx(m, out, shape, atol, rtol)
    return out
