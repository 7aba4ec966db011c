"""Latency measured apart from training: several independent ``torch.utils.benchmark``
measurements of one design and their spread, for the designs a search compares on speed
(``nas/latency.py``). The one-off timing of a model (``measure_latency``) is in ``latency.py``."""

from __future__ import annotations

import logging
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.deploy.onnx import INPUT_NAME, check_shape, eval_cpu_copy, forward_checked, verify_onnx, write_onnx
from defect_nas.measure.latency import Backend, cpu_model

__all__ = ["StableLatency", "stable_latency"]


@dataclass(frozen=True)
class StableLatency:
    """Batch-1 latency measured apart from any training: the median of several independent
    measurements and their spread, so a reader can tell a real difference from noise."""

    backend: str
    threads: int
    latency_ms: float  # median of the measurements
    cv: float  # coefficient of variation of the measurements (std / mean)
    measurements_ms: list[float]
    cpu_model: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stable_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    backend: Backend = "onnx",
    threads: int = 1,
    measurements: int = 5,
    min_run_time: float = 0.1,
) -> StableLatency:
    """Batch-1 latency as ``measurements`` independent ``torch.utils.benchmark`` measurements
    (each the median of blocks of runs, after its own warm-up), at ``threads`` threads.

    Meant for a quiet machine: the search calls it after exploration, when no trial trains, for the
    designs it compares on latency. Timed while other trials trained, the same design measured 3.9
    and 8.5 ms in one run (``benchmarks/latency_stability.py``)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on import
    from torch.utils.benchmark import Timer

    if measurements < 2:
        raise DefectNasError(f"need at least 2 measurements to report a spread, got {measurements}")
    shape = check_shape(input_shape)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m = eval_cpu_copy(model, channels_last=False)
        x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
        if backend == "onnx":
            with tempfile.TemporaryDirectory(prefix="defect-nas-onnx-") as tmp:
                path = Path(tmp) / "model.onnx"
                write_onnx(m, shape, path, None)
                sess, _ = verify_onnx(m, path, shape, 1e-4, 1e-3, threads=threads)
            feed = {INPUT_NAME: x.numpy()}

            def run() -> object:
                return sess.run(None, feed)
        elif backend == "eager":
            forward_checked(m, x)

            def run() -> object:
                with torch.no_grad():
                    return m(x)
        else:
            raise DefectNasError(f"backend must be 'eager' or 'onnx', got {backend!r}")
        timer = Timer(stmt="run()", globals={"run": run}, num_threads=threads)
        times = [timer.blocked_autorange(min_run_time=min_run_time).median * 1e3 for _ in range(measurements)]
    finally:
        torch.set_num_threads(old_threads)
    mean = statistics.fmean(times)
    return StableLatency(backend, threads, statistics.median(times), statistics.stdev(times) / mean, times,
                         cpu_model())
