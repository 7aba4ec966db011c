"""argparse ``type=`` helpers for every numeric flag: a value that is not a finite number of the
right kind in range fails while parsing, as one line, before any work (``core.numbers`` words it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from defect_nas.core.numbers import AT_LEAST_1, POSITIVE, SEED, Bounds

NumberType = Callable[[str], "int | float"]


def number(bounds: Bounds) -> NumberType:
    """A ``type=`` that parses one such number; ``.bounds`` tells tests what it accepts."""

    def parse(text: str) -> int | float:
        try:
            return bounds.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.bounds = bounds  # type: ignore[attr-defined]
    parse.__name__ = "whole number" if bounds.whole else "number"
    return parse


def finite_float(low: float | None = None, high: float | None = None, *, above: bool = False,
                 below: bool = False) -> NumberType:
    """A finite real in low..high (NaN and inf never pass); ``above``/``below`` exclude the limit."""
    return number(Bounds(low=low, high=high, above=above, below=below))


def int_in(low: int | None = None, high: int | None = None) -> NumberType:
    """A whole number in low..high, both included."""
    return number(Bounds(whole=True, low=low, high=high))


positive_float = number(POSITIVE)
positive_int = number(AT_LEAST_1)
non_negative_int = int_in(0)
seed_int = number(SEED)
threads_int = int_in(1, 1024)  # torch / ONNX Runtime threads: a typo like 100000 fails here, not in a pool
