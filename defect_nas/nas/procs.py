"""Worker processes of a run: they die with the search process and hold one loaded context each."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import signal
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from defect_nas.evaluators.runtime import Runtime

if TYPE_CHECKING:
    from defect_nas.nas.engine import SearchContext

_CTX: SearchContext | None = None  # the context of this pool process


def die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the search process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pool_init(config_dict: dict, run_dir: str, threads: int, device: str, counter) -> None:
    global _CTX
    from defect_nas.core.search_config import SearchConfig
    from defect_nas.nas.engine import load_context

    die_with_parent()
    warnings.filterwarnings("ignore")
    with counter.get_lock():  # this process's index, so that workers spread over the GPUs
        index = counter.value
        counter.value += 1
    runtime = Runtime(device=device, threads=threads).for_worker(index).apply()
    _CTX = load_context(SearchConfig.from_dict(config_dict), Path(run_dir), log=lambda m: None, runtime=runtime)


def context() -> SearchContext:
    assert _CTX is not None, "called outside a run_pool process"
    return _CTX


def run_pool(config_dict: dict, run_dir: Path, processes: int, threads: int,
             device: str = "cpu") -> ProcessPoolExecutor:
    """``processes`` spawned workers with ``threads`` torch threads each on ``device`` (round-robin
    over the GPUs with ``cuda``), the run's context loaded."""
    spawn = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=max(1, processes), mp_context=spawn, initializer=_pool_init,
                               initargs=(config_dict, str(run_dir), threads, device, spawn.Value("i", 0)))
