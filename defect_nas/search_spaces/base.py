"""What a search space is: a named distribution over ArchSpecs, plus its prototypes.

``propose(trial, task)`` draws through the optuna trial API (``suggest_int`` /
``suggest_categorical``), so the same code runs under an optuna sampler (the generator)
and under :class:`RandomTrial`, a seeded stand-in used by tests and ``defect-nas sample``.
"""

from __future__ import annotations

import dataclasses
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from defect_nas.core.registry import Registry
from defect_nas.core.spec import ArchSpec, Decoder, Head, feature_sizes, out_size


@dataclass(frozen=True)
class Task:
    """The input and output a network is designed for."""

    in_channels: int = 1
    input_size: int = 200
    num_classes: int = 6  # mask classes, background included, when ``segment``
    segment: bool = False  # per-pixel masks: every design gets a decoder (core.spec.Decoder)


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
    """A search space: ``propose`` draws one ArchSpec, ``prototypes`` are the seeds of the search. A
    space describes backbones; for a segmentation task both add the decoder (``with_decoder``)."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def backbone(self, trial: Any, task: Task) -> ArchSpec:
        """Draw one backbone with its classifier head (not yet fitted to a budget)."""

    @abstractmethod
    def backbone_prototypes(self, task: Task) -> dict[str, ArchSpec]:
        """Hand-designed seed architectures from the papers, by name."""

    def propose(self, trial: Any, task: Task) -> ArchSpec:
        """Draw one architecture for ``task`` (not yet fitted to a budget)."""
        spec = self.backbone(trial, task)
        return with_decoder(spec, draw_decoder(trial, spec)) if task.segment else spec

    def prototypes(self, task: Task) -> dict[str, ArchSpec]:
        """The seeds for ``task``: for segmentation each with Huang et al.'s decoder as they give it."""
        protos = self.backbone_prototypes(task)
        if not task.segment:
            return protos
        return {n: with_decoder(s, Decoder(32, HUANG_RATES, tap_at_stride(s, 4), 16)) for n, s in protos.items()}


#: Huang et al.'s atrous rates; the search also draws smaller ones (a 200 px image leaves the ASPP a
#: 7-13 px map, where rates 6-18 reach mostly padding).
HUANG_RATES = (6, 12, 18)
RATES = {"1-2-3": (1, 2, 3), "2-4-6": (2, 4, 6), "3-6-9": (3, 6, 9), "6-12-18": HUANG_RATES, "2-4": (2, 4)}


def draw_decoder(trial: Any, spec: ArchSpec) -> Decoder:
    """The decoder's searchable choices: width, atrous rates, the shortcut's stage (at 1/4 or 1/8 of the
    input, as Huang et al. tap the 4th or 5th block, or none) and its width."""
    tap = trial.suggest_categorical("dec_tap", ["1/4", "1/8", "none"])
    return Decoder(width=trial.suggest_categorical("dec_width", [16, 24, 32, 48, 64, 96]),
                   rates=RATES[trial.suggest_categorical("dec_rates", list(RATES))],
                   tap=-1 if tap == "none" else tap_at_stride(spec, int(tap[2:])),
                   skip=trial.suggest_categorical("dec_skip", [8, 16, 24, 32, 48]))


def tap_at_stride(spec: ArchSpec, stride: int) -> int:
    """The last stage (before the final one) whose output map is still at least 1/``stride`` of the
    input; -1 when no stage is."""
    sizes = feature_sizes(spec, spec.input_size)
    ends = [len(spec.stem) + sum(len(st) for st in spec.stages[: i + 1]) - 1 for i in range(len(spec.stages))]
    fine = [i for i, e in enumerate(ends[:-1]) if e >= 0 and sizes[e] >= -(-spec.input_size // stride)]
    return fine[-1] if fine else -1


def with_decoder(spec: ArchSpec, decoder: Decoder) -> ArchSpec:
    """``spec``'s backbone with ``decoder`` in place of its classifier head."""
    return dataclasses.replace(spec, head=Head(), decoder=decoder)


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
