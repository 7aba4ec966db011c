"""GPU latency and throughput of a model, timed with CUDA events (``benchmark --device cuda``).

Kept apart from ``latency`` (the CPU / ONNX Runtime measurement that the search's constraint and
the model card use: an inspection PC runs the CPU); this one answers "how fast on my GPU".
CUDA work is asynchronous, so wall-clock timers around a call measure the launch, not the work:
events recorded on the stream and a synchronise bracket each measurement, after a warm-up that
lets cuDNN pick its kernels.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class GpuTiming:
    device: str
    gpu: str
    precision: str  # fp32 | bf16 (autocast)
    latency_ms: float  # batch 1, median of ``repeats``
    throughput_img_s: float  # at ``batch``, median
    batch: int
    repeats: int

    def to_dict(self) -> dict:
        return asdict(self)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@torch.no_grad()
def measure_gpu(model: nn.Module, shape: tuple[int, int, int], device: str, precision: str = "fp32",
                batch: int = 64, repeats: int = 30, warmup: int = 10) -> GpuTiming:
    """Batch-1 latency and batch-``batch`` throughput of a copy of ``model`` on ``device``."""
    dev = torch.device(device)
    m = copy.deepcopy(model).eval().to(dev).to(memory_format=torch.channels_last)
    one = torch.rand(1, *shape, device=dev).contiguous(memory_format=torch.channels_last)
    many = torch.rand(batch, *shape, device=dev).contiguous(memory_format=torch.channels_last)

    def run(x):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return m(x)

    with torch.cuda.device(dev):  # events and synchronisation on the measured GPU, not the current one
        for _ in range(warmup):
            run(one)
            run(many)
        torch.cuda.synchronize(dev)
        latency = _median_ms(lambda: run(one), repeats)
        per_batch = _median_ms(lambda: run(many), max(3, repeats // 3))
    return GpuTiming(str(dev), torch.cuda.get_device_name(dev), precision, latency, batch * 1000.0 / per_batch,
                     batch, repeats)
