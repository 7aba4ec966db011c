"""Ctrl-C during a step that must finish: the step completes, then the run stops as interrupted."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def deferred_sigint(on_defer: Callable[[], None]) -> Iterator[list[int]]:
    """Hold back SIGINT for the block (an export of a few seconds: stopping half-way would leave no
    model to deploy); ``on_defer`` tells the user, and the yielded list is non-empty afterwards if
    one came. A second Ctrl-C stops at once (what is written is replaced atomically, so nothing is
    corrupted). Outside the main thread, where Python cannot set handlers, the block runs as is."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum: int, frame: object) -> None:
        if got:
            raise KeyboardInterrupt
        got.append(signum)
        on_defer()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, previous)
