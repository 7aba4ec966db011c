"""Where and how torch runs in this process: device, threads, precision.

One small object instead of device, thread and precision settings scattered over the modules that
train, measure and search. The CLI makes one per process from ``--device`` / ``--threads``; each
spawned worker gets its own, on its own GPU when there are several (``for_worker``). It also
says what ``precision="auto"`` means on this machine.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, replace
from typing import Any

import torch

from defect_nas.core.errors import DefectNasError

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES_HELP = "auto (a GPU when torch sees one, else cpu), cpu, cuda (every GPU) or cuda:N"


def bf16_supported() -> bool:
    """bf16 autocast pays off on a CPU only with native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.is_available()


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``auto`` becomes bf16 where the device computes it natively, else fp32."""
    if precision not in PRECISIONS:
        raise DefectNasError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if bf16_supported() else "fp32"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; a GPU asked for but absent is a
    one-line error naming the fix (never a silent fall-back to a 100x slower CPU run)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise DefectNasError(f"--device {device!r}: choose {DEVICES_HELP}")
    if not torch.cuda.is_available():
        raise DefectNasError(f"--device {device}: torch sees no GPU on this machine (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise DefectNasError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"  # as asked: auto | cpu | cuda | cuda:N; ``torch_device`` is where this process runs
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (all cores)
    precision: str = "auto"  # training precision: auto | bf16 | fp32 (scoring is always fp32)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", resolve_device(self.device))
        if self.threads is not None and self.threads < 1:
            raise DefectNasError(f"--threads {self.threads} must be at least 1")
        resolve_precision(self.precision, self.device)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def torch_device(self) -> torch.device:
        """``cuda`` (every GPU) means this process's current GPU; ``for_worker`` spreads workers."""
        if self.device == "cuda":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device(self.device)

    def for_worker(self, index: int) -> Runtime:
        """Worker ``index``'s runtime: with ``cuda`` (every GPU) workers go round-robin over
        cuda:0..N-1, so several trials share each GPU and all GPUs are used."""
        if self.device != "cuda":
            return self
        return replace(self, device=f"cuda:{index % torch.cuda.device_count()}")

    def apply(self) -> Runtime:
        """Set this process's torch threads (and current GPU); returns self: ``rt = Runtime(...).apply()``."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.is_cuda:
            torch.cuda.set_device(self.torch_device)
            # "fp32" must mean fp32 (validation and test are scored so); bf16 autocast is the fast path
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return self

    @property
    def train_precision(self) -> str:
        return resolve_precision(self.precision, self.device)

    def autocast(self, precision: str | None = None) -> contextlib.AbstractContextManager:
        """bf16 autocast on this device when ``precision`` (default: the training precision) is bf16."""
        precision = precision or self.train_precision
        return torch.autocast(self.torch_device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def release(self) -> None:
        """Give cached GPU memory back between trials, so trials sharing a GPU do not starve each other."""
        if self.is_cuda:
            torch.cuda.empty_cache()

    def to_dict(self) -> dict[str, Any]:
        """As recorded in a run's config: the device, threads, and what ``auto`` precision became here."""
        d: dict[str, Any] = {"device": self.device, "threads": self.threads, "precision": self.precision,
                             "train_precision": self.train_precision}
        if self.is_cuda:
            d["gpu"] = torch.cuda.get_device_name(self.torch_device)
        return d
