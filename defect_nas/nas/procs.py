"""Worker processes of a run: they die with the search process and hold one loaded context each."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from defect_nas.core.interrupts import STOP_SIGNALS
from defect_nas.evaluators.runtime import Runtime

if TYPE_CHECKING:
    from defect_nas.nas.context import SearchContext

_CTX: SearchContext | None = None  # the context of this pool process


def die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the search process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def ignore_stop_signals() -> None:
    """Ctrl-C reaches the whole process group, and systemd's SIGTERM the whole service: the search
    process alone handles them (it kills its workers, fails and re-queues their trials, and writes
    the results), so a worker neither dies mid-write nor prints a traceback."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


@contextmanager
def children_ignore_stop_signals() -> Iterator[None]:
    """Start child processes inside this: a spawned child imports torch for seconds before its own
    code can ignore SIGINT, and a Ctrl-C in that window printed its KeyboardInterrupt traceback. An
    ignored signal survives exec and Python then leaves SIGINT ignored, so the search process
    ignores both while it starts children (milliseconds) and restores its own handlers at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Pool(ProcessPoolExecutor):
    """A pool whose workers start with SIGINT and SIGTERM ignored (they are spawned on submit)."""

    def submit(self, fn, /, *args, **kwargs):
        with children_ignore_stop_signals():
            return super().submit(fn, *args, **kwargs)


def _pool_init(config_dict: dict, run_dir: str, threads: int, device: str, counter) -> None:
    global _CTX
    from defect_nas.core.search_config import SearchConfig
    from defect_nas.nas.context import load_context

    die_with_parent()
    ignore_stop_signals()
    warnings.filterwarnings("ignore")
    with counter.get_lock():  # this process's index, so that workers spread over the GPUs
        index = counter.value
        counter.value += 1
    runtime = Runtime(device=device, threads=threads).for_worker(index).apply()
    _CTX = load_context(SearchConfig.from_dict(config_dict), Path(run_dir), log=lambda m: None, runtime=runtime)


def context() -> SearchContext:
    assert _CTX is not None, "called outside a run_pool process"
    return _CTX


@contextmanager
def run_pool(config_dict: dict, run_dir: Path, processes: int, threads: int,
             device: str = "cpu") -> Iterator[ProcessPoolExecutor]:
    """``processes`` spawned workers with ``threads`` torch threads each on ``device`` (round-robin
    over the GPUs with ``cuda``), the run's context loaded. Left by an exception (Ctrl-C, SIGTERM),
    the workers are killed at once (they ignore SIGTERM): shutting down waited for their trainings
    (38 s to hang)."""
    spawn = mp.get_context("spawn")
    pool = _Pool(max_workers=max(1, processes), mp_context=spawn, initializer=_pool_init,
                               initargs=(config_dict, str(run_dir), threads, device, spawn.Value("i", 0)))
    try:
        yield pool
    except BaseException:
        for p in list((getattr(pool, "_processes", None) or {}).values()):  # no public terminate before 3.14
            p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


MAX_RESTARTS = 3  # per worker slot: a worker that keeps dying (out of memory on every draw) is not respawned forever


@dataclass(frozen=True)
class WorkerJob:
    """What one spawned search worker needs (picklable: it crosses into a fresh interpreter)."""

    config: dict  # SearchConfig.to_dict()
    run_dir: str
    storage_url: str
    study_name: str
    n_trials: int | None
    deadline: float | None
    threads: int = 1
    device: str = "cpu"
    trials_before: int = 0  # trials in the study when this worker starts: seeds its sampler past them


def _search_worker(job: WorkerJob, worker: int) -> None:
    die_with_parent()
    ignore_stop_signals()
    from defect_nas.nas.workers import worker_process

    worker_process(job, worker)


def _death(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def explore(study, job: WorkerJob, workers: int, on_tick, log) -> int:
    """Run ``workers`` search worker processes (``workers.worker_process(job, w)``) until they finish.
    A worker that dies (the out-of-memory killer, kill -9, a crash) is reported, the trial it ran is
    failed and queued again, and it is respawned, with its sampler seeded past the draws made so far,
    up to MAX_RESTARTS times per slot. Returns the number of deaths."""
    from defect_nas.nas.storage import UNOWNED_S, fail_orphaned_trials, fail_unowned_trials

    spawn = mp.get_context("spawn")

    def start(w: int, trials_before: int):
        p = spawn.Process(target=_search_worker, args=(replace(job, trials_before=trials_before), w), daemon=False)
        with children_ignore_stop_signals():
            p.start()
        return p

    procs = {w: start(w, job.trials_before) for w in range(workers)}
    restarts = dict.fromkeys(procs, 0)
    deaths, last_death = 0, None
    try:
        while procs:
            on_tick()
            if last_death is not None and time.monotonic() - last_death >= UNOWNED_S:
                # a worker killed before it named itself on its trial left that trial RUNNING for nobody
                if n := fail_unowned_trials(study):
                    log(f"{n} trial(s) started by a dead worker failed and queued again")
                last_death = None
            for w, p in list(procs.items()):
                p.join(timeout=2.0 / len(procs))
                if p.exitcode is None:
                    continue
                del procs[w]
                if p.exitcode == 0:
                    continue
                deaths += 1
                last_death = time.monotonic()
                n = fail_orphaned_trials(study, p.pid)
                again = restarts[w] < MAX_RESTARTS
                log(f"worker {w} (pid {p.pid}) died ({_death(p.exitcode)}); {n} trial(s) it ran failed and "
                    f"queued again; {'restarting it' if again else 'not restarted: it died too often'}")
                if again:
                    restarts[w] += 1
                    procs[w] = start(w, len(study.trials))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop at once; their running trials are failed and queued
        for p in procs.values():  # again for a resume. Killed (they ignore SIGTERM), and gone before their
            p.kill()  # trials are failed: a worker must not tell a trial after that
        for p in procs.values():
            p.join()
            fail_orphaned_trials(study, p.pid)
        raise
    return deaths
