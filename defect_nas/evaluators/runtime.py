"""Where and how torch runs in this process: device, threads, precision.

One small object instead of thread and precision settings scattered over the modules that train,
measure and search. It is applied once per process (the CLI for its own process, each spawned
worker for itself), and says what ``precision="auto"`` means on this machine. CPU only for now;
the GPU issue extends ``device``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from defect_nas.core.errors import DefectNasError

PRECISIONS = ("auto", "bf16", "fp32")


def bf16_supported() -> bool:
    """bf16 autocast pays off only with native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.is_available()


def resolve_precision(precision: str) -> str:
    """``auto`` becomes bf16 where the CPU has native bf16, else fp32."""
    if precision not in PRECISIONS:
        raise DefectNasError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (all cores)
    precision: str = "auto"  # training precision: auto | bf16 | fp32 (scoring is always fp32)

    def __post_init__(self) -> None:
        if self.device != "cpu":
            raise DefectNasError(f"device {self.device!r}: only cpu is supported so far")
        if self.threads is not None and self.threads < 1:
            raise DefectNasError(f"--threads {self.threads} must be at least 1")
        resolve_precision(self.precision)

    def apply(self) -> Runtime:
        """Set this process's torch threads; returns self so that ``rt = Runtime(...).apply()``."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return self

    def to_dict(self) -> dict[str, str | int | None]:
        """As recorded in a run's config: what was asked and what ``auto`` became here."""
        return {"device": self.device, "threads": self.threads, "precision": self.precision,
                "train_precision": self.train_precision}

    @property
    def train_precision(self) -> str:
        return resolve_precision(self.precision)
