"""Ctrl-C (SIGINT) and SIGTERM stop a command the same way: what is done is written, then it exits
130 or 143. SIGTERM is what ``docker stop``, systemd and most supervisors send; it used to end a
search at once, without its tables, summary, report or winner. A step that must finish (an
export) holds both back until it is done."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the stop signals this process received since handle_stop_signals()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so every path that stops cleanly on one
    stops cleanly on the other."""


def _raise_for(signum: int) -> None:
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _stop(signum: int, frame: object) -> None:
    _received.append(signum)
    _raise_for(signum)


def handle_stop_signals() -> None:
    """In the main thread: SIGINT raises KeyboardInterrupt and SIGTERM Terminated, even when the
    command was started as a script's background job (which inherits SIGINT ignored)."""
    _received.clear()
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, _stop)


def stop_signal() -> int:
    """The signal that stopped this command: SIGTERM if one came, else SIGINT (also for a
    KeyboardInterrupt raised without a signal)."""
    return signal.SIGTERM if signal.SIGTERM in _received else signal.SIGINT


def stopped_by() -> str:
    """'SIGTERM' or 'SIGINT', as the summary and the last line say it."""
    return signal.Signals(stop_signal()).name


def stop_status() -> int:
    """The shell's exit status for a command stopped by that signal: 130 (SIGINT) or 143 (SIGTERM)."""
    return 128 + stop_signal()


@contextmanager
def deferred_stop(on_defer: Callable[[], None]) -> Iterator[list[int]]:
    """Hold back SIGINT and SIGTERM for the block (an export of a few seconds: stopping half-way
    would leave no model to deploy); ``on_defer`` tells the user, and the yielded list holds the
    signal afterwards if one came. A second one stops at once (what is written is replaced
    atomically, so nothing is corrupted). Outside the main thread, where Python cannot set
    handlers, the block runs as is."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum: int, frame: object) -> None:
        _received.append(signum)
        if got:
            _raise_for(signum)
        got.append(signum)
        on_defer()

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
