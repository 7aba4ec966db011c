"""CPU latency and throughput of a model, in eager PyTorch or ONNX Runtime.

The search trades accuracy against deployment speed, so speed is measured the way a model is
served: batch-1 latency (ms per image) and batch-N throughput (images/s), the median of
``repeats`` timed runs after ``warmup`` untimed runs, with the thread count, CPU model and
library versions recorded so numbers from different machines are not compared blindly.

ONNX export uses PyTorch's TorchScript-based exporter (``dynamo=False``): in torch 2.14 the
default dynamo exporter needs the extra ``onnxscript`` package, the legacy one needs nothing
beyond ``onnx``. Every export is checked against the eager output with ONNX Runtime
(``CPUExecutionProvider``) at two batch sizes, so a model that exports wrongly (unsupported op,
randomness in eval, a batch axis baked in) fails loudly instead of reporting a bogus latency.
"""

from __future__ import annotations

import copy
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from defect_nas.core.errors import DefectNasError

__all__ = [
    "LatencyResult",
    "OnnxMismatchError",
    "cpu_model",
    "export_onnx",
    "measure_latency",
    "measure_onnx_file",
    "ort_session",
]

Backend = Literal["eager", "onnx"]
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class OnnxMismatchError(DefectNasError):
    """ONNX Runtime's output differs from PyTorch's beyond tolerance (or the export failed)."""


@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement with the context needed to compare it with others."""

    backend: str
    input_shape: tuple[int, ...]  # one image, without the batch axis
    latency_ms: float  # batch 1, median of repeats, ms per image
    latency_ms_min: float
    latency_ms_max: float
    throughput_batch_size: int | None
    throughput_img_s: float | None  # batch N, N / median seconds per batch
    warmup: int
    repeats: int
    threads: int
    channels_last: bool
    cpu_model: str
    torch_version: str
    onnxruntime_version: str | None
    onnx_max_abs_diff: float | None  # ORT vs eager at export check (onnx backend only)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON results files."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else whatever ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
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


def _eval_cpu_copy(model: nn.Module, channels_last: bool) -> nn.Module:
    """A CPU, eval-mode copy: measuring never changes the caller's model (mode, device, layout)."""
    if not isinstance(model, nn.Module):
        raise DefectNasError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    m = copy.deepcopy(model).cpu().eval()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m


def _forward_checked(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
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


def _time_ms(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


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


def _verify_onnx(
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
        ref = _forward_checked(model, x).numpy()
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


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, opset: int | None) -> None:
    x = torch.randn((1, *shape))
    _forward_checked(model, x)  # clear error for a bad shape before the exporter's own
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
    shape = _check_shape(input_shape)
    out = Path(path)
    m = _eval_cpu_copy(model, channels_last=False)
    _export(m, shape, out, opset)
    _verify_onnx(m, out, shape, atol, rtol)
    return out


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 200, 200),
    *,
    backend: Backend = "eager",
    batch_size_throughput: int | None = 32,
    warmup: int = 5,
    repeats: int = 20,
    threads: int | None = None,
    channels_last: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> LatencyResult:
    """Batch-1 latency and batch-N throughput of ``model`` on the CPU.

    ``input_shape`` is one image without the batch axis, e.g. ``(1, 200, 200)``. ``threads``
    sets torch's intra-op threads for the measurement (restored afterwards) and ORT's
    intra-op threads; ``None`` keeps torch's current count. ``batch_size_throughput=None``
    skips the throughput run. ``channels_last`` applies to the eager backend (ORT picks its own
    layout). The caller's model is not modified (a CPU eval copy is measured).
    """
    if backend not in ("eager", "onnx"):
        raise DefectNasError(f"backend must be 'eager' or 'onnx', got {backend!r}")
    shape = _check_shape(input_shape)
    if channels_last and len(shape) != 3:
        raise DefectNasError(f"channels_last needs a (C, H, W) input_shape, got {shape}")
    if warmup < 0 or repeats < 1:
        raise DefectNasError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    if batch_size_throughput is not None and batch_size_throughput < 1:
        raise DefectNasError(f"batch_size_throughput must be >= 1, got {batch_size_throughput}")
    if threads is not None and threads < 1:
        raise DefectNasError(f"threads must be >= 1, got {threads}")

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()
    try:
        m = _eval_cpu_copy(model, channels_last and backend == "eager")
        g = torch.Generator().manual_seed(0)
        x1 = torch.randn((1, *shape), generator=g)
        xn = (
            torch.randn((batch_size_throughput, *shape), generator=g)
            if batch_size_throughput is not None
            else None
        )
        ort_version: str | None = None
        max_diff: float | None = None
        if backend == "eager":
            if channels_last:
                x1 = x1.contiguous(memory_format=torch.channels_last)
                xn = None if xn is None else xn.contiguous(memory_format=torch.channels_last)
            _forward_checked(m, x1)

            def run(x: torch.Tensor) -> Callable[[], object]:
                def f() -> object:
                    with torch.no_grad():
                        return m(x)

                return f

            run1 = run(x1)
            runn = None if xn is None else run(xn)
        else:
            import onnxruntime as ort

            ort_version = ort.__version__
            with tempfile.TemporaryDirectory(prefix="defect-nas-onnx-") as tmp:
                path = Path(tmp) / "model.onnx"
                _export(m, shape, path, None)
                sess, max_diff = _verify_onnx(m, path, shape, atol, rtol, threads=n_threads)
            feed1 = {INPUT_NAME: x1.numpy()}
            feedn = None if xn is None else {INPUT_NAME: xn.numpy()}
            run1 = lambda: sess.run(None, feed1)  # noqa: E731
            runn = None if feedn is None else (lambda: sess.run(None, feedn))

        t1 = _time_ms(run1, warmup, repeats)
        throughput = None
        if runn is not None and batch_size_throughput is not None:
            tn = _time_ms(runn, warmup, repeats)
            throughput = batch_size_throughput / (statistics.median(tn) / 1e3)
    finally:
        torch.set_num_threads(old_threads)

    return LatencyResult(
        backend=backend,
        input_shape=shape,
        latency_ms=statistics.median(t1),
        latency_ms_min=min(t1),
        latency_ms_max=max(t1),
        throughput_batch_size=batch_size_throughput,
        throughput_img_s=throughput,
        warmup=warmup,
        repeats=repeats,
        threads=n_threads,
        channels_last=channels_last and backend == "eager",
        cpu_model=cpu_model(),
        torch_version=torch.__version__,
        onnxruntime_version=ort_version,
        onnx_max_abs_diff=max_diff,
    )


def measure_onnx_file(
    path: str | Path,
    input_shape: Sequence[int],
    *,
    batch_size_throughput: int | None = 32,
    warmup: int = 5,
    repeats: int = 20,
    threads: int | None = None,
) -> LatencyResult:
    """``measure_latency``'s onnx backend for a file already written (an int8 model, say): the same
    inputs, timing and record, without a PyTorch model to export or compare with."""
    import onnxruntime as ort

    shape = _check_shape(input_shape)
    sess = ort_session(path, threads)
    g = torch.Generator().manual_seed(0)
    feed1 = {INPUT_NAME: torch.randn((1, *shape), generator=g).numpy()}
    t1 = _time_ms(lambda: sess.run(None, feed1), warmup, repeats)
    throughput = None
    if batch_size_throughput is not None:
        feedn = {INPUT_NAME: torch.randn((batch_size_throughput, *shape), generator=g).numpy()}
        throughput = batch_size_throughput / (statistics.median(_time_ms(lambda: sess.run(None, feedn), warmup,
                                                                          repeats)) / 1e3)
    return LatencyResult(
        backend="onnx", input_shape=shape, latency_ms=statistics.median(t1), latency_ms_min=min(t1),
        latency_ms_max=max(t1), throughput_batch_size=batch_size_throughput, throughput_img_s=throughput,
        warmup=warmup, repeats=repeats, threads=threads or torch.get_num_threads(), channels_last=False,
        cpu_model=cpu_model(), torch_version=torch.__version__, onnxruntime_version=ort.__version__,
        onnx_max_abs_diff=None,
    )
