"""What a search space is: a named distribution over ArchSpecs, plus its prototypes.

``propose(trial, task)`` draws through the optuna trial API (``suggest_int`` /
``suggest_categorical``), so the same code runs under an optuna sampler (the generator)
and under :class:`RandomTrial`, a seeded stand-in used by tests and ``defect-nas sample``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from defect_nas.core.registry import Registry
from defect_nas.core.spec import ArchSpec, out_size


@dataclass(frozen=True)
class Task:
    """The input and output a network is designed for."""

    in_channels: int = 1
    input_size: int = 200
    num_classes: int = 6


class RandomTrial:
    """A seeded stand-in for ``optuna.trial.Trial`` (only the suggest methods the spaces use)."""

    def __init__(self, seed: int | random.Random = 0):
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        v = self.rng.randrange(low, high + 1, step)
        self.params[name] = v
        return v

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        v = self.rng.choice(list(choices))
        self.params[name] = v
        return v

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        v = self.rng.uniform(low, high)
        self.params[name] = v
        return v


class Space(ABC):
    """A search space: ``propose`` draws one ArchSpec, ``prototypes`` are the seeds of the search."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def propose(self, trial: Any, task: Task) -> ArchSpec:
        """Draw one architecture (not yet fitted to a budget)."""

    @abstractmethod
    def prototypes(self, task: Task) -> dict[str, ArchSpec]:
        """Hand-designed seed architectures from the papers, by name."""


def stride_choice(trial: Any, name: str, size: int, min_size: int = 4) -> int:
    """Draw a stride but keep the map at least ``min_size`` pixels (small inputs force stride 1)."""
    s = trial.suggest_categorical(name, [1, 2])
    return s if out_size(size, s) >= min_size else 1


def register(space: Space) -> Space:
    """Class decorator target: ``register(MySpace())`` makes it ``--space my-space``."""
    return SPACES.add(space.name, space)


def get_space(name: str) -> Space:
    return SPACES.get(name)


def all_spaces() -> dict[str, Space]:
    return dict(SPACES.items())


def _load_builtin() -> None:
    # Importing the modules registers them; done lazily to keep import order free of cycles.
    from defect_nas.search_spaces import lw, residual, vgg_student  # noqa: F401


SPACES: Registry[Space] = Registry("search space", "--space", loader=_load_builtin)
