"""What every results folder records so a number can be traced back: versions, machine, seed."""

from __future__ import annotations

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
from defect_nas.evaluators.latency import cpu_model
from defect_nas.evaluators.runtime import gpu_info

_PACKAGES = ("defect-nas", "torch", "torchvision", "optuna", "fvcore", "ptflops", "onnxruntime", "numpy", "pandas")


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
