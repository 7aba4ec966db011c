"""CPU latency and throughput of a model, in eager PyTorch or ONNX Runtime.

The search trades accuracy against deployment speed, so speed is measured the way a model is
served: batch-1 latency (ms per image) and batch-N throughput (images/s), the median of
``repeats`` timed runs after ``warmup`` untimed runs, with the thread count, CPU model and
library versions recorded so numbers from different machines are not compared blindly.

The ONNX backend exports through ``deploy.onnx`` (checked against eager output before timing).
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.deploy.onnx import (
    INPUT_NAME,
    check_shape,
    eval_cpu_copy,
    forward_checked,
    ort_session,
    verify_onnx,
    write_onnx,
)
from defect_nas.deploy.runtimes import logits_fn

__all__ = ["LatencyResult", "cpu_model", "measure_latency", "measure_onnx_file"]

Backend = Literal["eager", "onnx", "openvino", "zentorch"]
BACKENDS = ("eager", "onnx", "openvino", "zentorch")


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


def _time_ms(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


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
    if backend not in BACKENDS:
        raise DefectNasError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    shape = check_shape(input_shape)
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
        m = eval_cpu_copy(model, channels_last and backend == "eager")
        g = torch.Generator().manual_seed(0)
        x1 = torch.randn((1, *shape), generator=g)
        xn = (
            torch.randn((batch_size_throughput, *shape), generator=g)
            if batch_size_throughput is not None
            else None
        )
        ort_version: str | None = None
        max_diff: float | None = None
        if backend in ("eager", "zentorch"):
            if channels_last:
                x1 = x1.contiguous(memory_format=torch.channels_last)
                xn = None if xn is None else xn.contiguous(memory_format=torch.channels_last)
            want = forward_checked(m, x1)
            if backend == "zentorch":  # AMD ZenDNN through torch.compile, checked against eager
                m = zentorch_compiled(m)
                with torch.no_grad():
                    got = m(x1)
                max_diff = float((got - want.detach()).abs().max())
                if not torch.allclose(got, want.detach(), atol=atol, rtol=rtol):
                    raise DefectNasError(f"zentorch output differs from eager PyTorch by {max_diff:.2g}")

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
                write_onnx(m, shape, path, None)
                sess, max_diff = verify_onnx(m, path, shape, atol, rtol, threads=n_threads)
                if backend == "openvino":  # compiled while the file exists; checked against ORT's output
                    ov_run = logits_fn(path, "openvino", n_threads)
                    ref = sess.run(None, {INPUT_NAME: x1.numpy()})[0]
                    if not np.allclose(ov_run(x1.numpy()), ref, atol=atol, rtol=rtol):
                        raise DefectNasError("OpenVINO's output differs from ONNX Runtime's beyond tolerance")
                    sess = None
            if backend == "openvino":
                x1n, xnn = x1.numpy(), None if xn is None else xn.numpy()
                run1 = lambda: ov_run(x1n)  # noqa: E731
                runn = None if xnn is None else (lambda: ov_run(xnn))
            else:
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


def zentorch_compiled(model: nn.Module) -> nn.Module:
    """``model`` compiled by torch.compile with AMD's ZenDNN backend (``pip install 'defect-nas[zentorch]'``)."""
    try:
        import zentorch  # noqa: F401  (registers the "zentorch" backend of torch.compile)
    except ImportError:
        raise DefectNasError("zentorch is not installed: pip install 'defect-nas[zentorch]'") from None
    return torch.compile(model, backend="zentorch")


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

    shape = check_shape(input_shape)
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
