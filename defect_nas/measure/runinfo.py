"""What every results folder records so a number can be traced back: versions, machine, seed."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from defect_nas.core.errors import DefectNasError
from defect_nas.measure.latency import cpu_model

_PACKAGES = ("defect-nas", "torch", "torchvision", "optuna", "fvcore", "ptflops", "onnxruntime", "numpy", "pandas",
             "openvino", "nncf", "zentorch")  # the last three: optional runtimes, None when absent


def gpu_info() -> list[dict[str, Any]]:
    """Name, memory, CUDA and driver version of each visible GPU ([] without one), for environment.json."""
    if not torch.cuda.is_available():
        return []
    driver = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        driver = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                     "capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda, "driver": driver})
    return gpus


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int | None = None) -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpu_info(),  # [] without one: name, memory, CUDA and driver version of each
        "seed": seed,
        "versions": versions,
        "git_commit": git_commit(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def new_run_dir(results: str | Path, label: str) -> Path:
    """A fresh folder ``results/<UTC time>-<label>``; a clear error if ``results`` is not writable."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.@-]+", "-", label).strip("-")
    base = Path(results)
    for n in range(1000):
        run = base / (f"{stamp}-{safe}" if n == 0 else f"{stamp}-{safe}-{n}")
        try:
            run.mkdir(parents=True, exist_ok=False)
            return run
        except FileExistsError:
            continue
        except OSError as e:
            raise DefectNasError(
                f"{base}: cannot create a run folder ({e.strerror}); pass a writable --results"
            ) from None
    raise DefectNasError(f"{base}: too many runs with the same name this second")
