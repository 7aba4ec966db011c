"""What a number given by a user must be (a flag, a --config value): of the right kind, finite, in range.

One wording for the command line and config files, checked before any work: NaN passed every
``x < 0`` test and reached the workers (NaN != NaN then failed their settings check), and a
string in a config file ended in a ``TypeError`` traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SEED_MAX = 2**32 - 1  # what numpy and optuna's samplers accept


def _show(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Bounds:
    """A whole or real, finite number within ``low``..``high`` (None: no limit); ``above`` /
    ``below`` exclude the limit itself (a positive number: ``Bounds(low=0, above=True)``)."""

    whole: bool = False
    low: float | None = None
    high: float | None = None
    above: bool = False
    below: bool = False

    def describe(self) -> str:
        """e.g. 'a whole number from 0 to 4294967295', 'a positive number', 'a number above 0 and below 1'."""
        kind = "a whole number" if self.whole else "a number"
        if self.low == 0 and self.above and self.high is None:
            return f"a positive {'whole ' if self.whole else ''}number"
        if self.low is not None and self.high is not None and not (self.above or self.below):
            return f"{kind} from {_show(self.low)} to {_show(self.high)}"
        limits = []
        if self.low is not None:
            limits.append(f"{'above' if self.above else 'at least'} {_show(self.low)}")
        if self.high is not None:
            limits.append(f"{'below' if self.below else 'at most'} {_show(self.high)}")
        text = " and ".join(limits)
        return f"{kind} {'of ' if text.startswith('at') else ''}{text}" if limits else f"a finite {kind[2:]}"

    def problem(self, value: object) -> str | None:
        """'<value> must be <describe()>' when ``value`` is not such a number (bool, str, NaN, inf,
        out of range), else None."""
        kind_ok = not isinstance(value, bool) and isinstance(value, int if self.whole else (int, float))
        if not kind_ok or not (self.whole or math.isfinite(value)) or not self._within(value):
            return f"{value!r} must be {self.describe()}"
        return None

    def parse(self, text: str) -> int | float:
        """``text`` as such a number; ValueError('<text> must be ...') otherwise."""
        try:
            value = int(text) if self.whole else float(text)
        except ValueError:
            value = None
        if value is None or self.problem(value):
            raise ValueError(f"{text!r} must be {self.describe()}")
        return value

    def _within(self, v: float) -> bool:
        low_ok = self.low is None or (v > self.low if self.above else v >= self.low)
        high_ok = self.high is None or (v < self.high if self.below else v <= self.high)
        return low_ok and high_ok


POSITIVE = Bounds(low=0, above=True)
AT_LEAST_1 = Bounds(whole=True, low=1)
SEED = Bounds(whole=True, low=0, high=SEED_MAX)
FRACTION = Bounds(low=0, high=1)  # 0..1, both ends included
