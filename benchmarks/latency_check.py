"""Eager vs ONNX Runtime CPU latency of a torchvision reference model with 1-channel input.

Gives the team reference numbers for this machine (randomly initialised weights: no download).
Usage::

    PYTHONPATH=. python benchmarks/latency_check.py --model resnet50 --threads 1 2
    PYTHONPATH=. python benchmarks/latency_check.py --max-ms 80   # exit 1 if any median is slower

Prints one JSON object per (backend, threads) and a summary table.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torchvision
from torch import nn

from defect_nas.measure.latency import measure_latency


def reference_model(name: str, num_classes: int = 6) -> nn.Module:
    """A torchvision classifier whose stem takes 1 channel (grey defect images)."""
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if hasattr(model, "conv1"):  # resnets
        c = model.conv1
        model.conv1 = nn.Conv2d(
            1, c.out_channels, c.kernel_size, c.stride, c.padding, bias=c.bias is not None
        )
    else:
        raise SystemExit(f"{name}: only models with .conv1 (resnets) are supported here")
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", default=["eager", "onnx"])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--throughput-batch", type=int, default=0, help="0 skips throughput")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--max-ms", type=float, default=None, help="fail if a median exceeds this")
    a = p.parse_args(argv)

    torch.manual_seed(0)
    model = reference_model(a.model)
    rows = []
    for threads in a.threads:
        for backend in a.backends:
            r = measure_latency(
                model,
                (1, a.size, a.size),
                backend=backend,
                batch_size_throughput=a.throughput_batch or None,
                warmup=a.warmup,
                repeats=a.repeats,
                threads=threads,
                channels_last=a.channels_last,
            )
            print(json.dumps(r.to_dict()), flush=True)
            rows.append(r)
    print(f"\n{a.model} 1x{a.size}x{a.size}, {rows[0].cpu_model}, torch {rows[0].torch_version}")
    print(f"{'backend':8} {'threads':>7} {'median ms':>10} {'min ms':>8} {'img/s':>8}")
    for r in rows:
        tput = f"{r.throughput_img_s:8.1f}" if r.throughput_img_s else f"{'-':>8}"
        print(f"{r.backend:8} {r.threads:7d} {r.latency_ms:10.2f} {r.latency_ms_min:8.2f} {tput}")
    if a.max_ms is not None:
        slow = [r for r in rows if r.latency_ms > a.max_ms]
        if slow:
            print(f"FAIL: {len(slow)} median(s) above {a.max_ms} ms", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
