"""SearchConfig: one frozen description of a search, saved as config.json and on the study.

Workers on other machines rebuild everything from it, so it must hold every choice that
changes a result (space, budget, fidelity, teacher, seed), and nothing machine-specific.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from defect_nas.core.budget import CHANNEL_MULTIPLE, channel_multiple_problem
from defect_nas.core.errors import DefectNasError
from defect_nas.core.numbers import AT_LEAST_1, FRACTION, POSITIVE, SEED, Bounds
from defect_nas.core.utility import OBJECTIVES

NO_TEACHER = "none"


def kd_for(teacher: str, kd: str) -> str:
    """The distillation loss actually used: none without a teacher (search, train and resume alike)."""
    return "none" if teacher == NO_TEACHER else kd

MIN_INPUT, MAX_INPUT = 32, 512  # input sizes the trainer accepts (TrainConfig) and the spaces can downsample
RESUMABLE = ("trials", "time_budget_s")  # may change when a search is resumed
AUTO = ("proxy_input_size",)  # None = chosen from the data; resuming, a run keeps the value it stored
RETIRED = ("search_share", "baseline_epochs", "top_k_retrain")  # keys of older config.json files, ignored
MAX_BUDGET = 10e9  # MACs: defect-nas designs compact networks (ResNet-50 is 4.1G at 224 px); above this a
# fitted "compact" net has tens of millions of params and takes hours per trial on an inspection PC's CPU
TASKS = ("classify", "segment")
IMBALANCE_CHOICES = ("auto", "none", "sampler", "weights", "logit")
HEAD_POOL_CHOICES = ("gap", "gmp")
RUN_KEYS = ("storage", "study", "device")  # config.json keys about where this run ran, not what it searches
FLAGS = {"spaces": "--space", "time_budget_s": "--time-budget"}  # fields whose flag is not --field-name
SIZE = Bounds(whole=True, low=MIN_INPUT, high=MAX_INPUT)
SHARE = Bounds(low=0, high=1, above=True, below=True)
BOUNDS = {  # the range of each numeric field, for its flag and --config alike (others: any finite value)
    "budget_flops": POSITIVE, "tolerance": SHARE, "max_params": AT_LEAST_1, "max_latency_ms": POSITIVE,
    "latency_target_ms": POSITIVE, "channel_multiple": AT_LEAST_1, "min_accuracy": Bounds(low=0, high=100, below=True),
    "trials": AT_LEAST_1, "time_budget_s": POSITIVE, "explore_share": SHARE, "promote_share": Bounds(low=0, high=1,
    below=True), "epochs": AT_LEAST_1, "proxy_input_size": SIZE, "min_epochs": AT_LEAST_1, "top_k": AT_LEAST_1,
    "promote_epochs": AT_LEAST_1, "accuracy_margin": Bounds(low=0, high=100), "final_seeds": AT_LEAST_1,
    "final_epochs": AT_LEAST_1, "patience": AT_LEAST_1, "final_input_size": SIZE, "ema_epochs": POSITIVE,
    "teacher_freeze": Bounds(whole=True, low=0, high=5), "teacher_epochs": AT_LEAST_1, "teacher_input_size": SIZE,
    "kd_alpha": FRACTION, "seed": SEED, "split_seed": SEED,
}


def flag(name: str) -> str:
    """The command-line flag of a SearchConfig field, as errors name it."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _kind_problem(value: Any, hint: Any, bounds: Bounds | None) -> str | None:
    """What is wrong with a field's value for its annotation (``int | None``, ``tuple[str, ...]``...)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint in (int, float):
        return (bounds or Bounds(whole=hint is int)).problem(value)
    if hint is bool:
        return None if isinstance(value, bool) else f"{value!r} must be true or false"
    if hint is str:
        return None if isinstance(value, str) else f"{value!r} must be text"
    if typing.get_origin(hint) is tuple:
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        return None if ok else f"{value!r} must be a list of names"
    return None


# --target-accuracy trains 3-4 budgets in one time budget; each rung's seeds are what its front point
# is, so there the defaults give the final seeds 65% instead of 45% (explore, promote shares):
# with 0.4/0.15 the 10M rung's seeds of a 24-minute run got 31 epochs and missed 99.5% by 0.3 points
# (results/benchmarks/neu_target_smoke_24m.*)
TARGET_SHARES = (0.25, 0.10)


@dataclass(frozen=True)
class SearchConfig:
    dataset: str = "neu"
    task: str = "classify"  # or "segment": per-pixel masks, a decoder on each backbone (nas.seg_search)
    spaces: tuple[str, ...] = ("residual",)
    budget_flops: float = 100e6
    tolerance: float = 0.05
    max_params: int | None = None
    max_latency_ms: float | None = None
    strategy: str = "tpe"  # a registered strategy (nas.strategies.STRATEGIES)
    nsga2_cost: str = "macs"  # second objective of nsga2: "macs" | "latency"
    objective: str = "netscore"  # single-objective utility: a name of core.utility.OBJECTIVES
    latency_target_ms: float | None = None  # mnas's target latency T
    channel_multiple: int = CHANNEL_MULTIPLE  # budget.fit's preferred width step
    min_accuracy: float = 95.0  # percent, on validation: below it a candidate cannot win
    trials: int | None = None
    time_budget_s: float | None = None
    # A time budget covers the whole run. After set-up (data, teacher) the rest R, less a reserve for
    # export and report, goes: explore_share x R to the proxy search, promote_share x R to the
    # full-resolution rung of the top-k, the remainder to the winner's seeds (see defect_nas/nas/plan.py).
    explore_share: float = 0.4
    promote_share: float = 0.15
    epochs: int = 12  # rung 1: epochs of a search trial at the proxy size (pruned earlier when weak)
    proxy_input_size: int | None = None  # search trials train at this input size (None: chosen from the data,
    # see nas.recipe: 100 px on NEU's 200 px images)
    imbalance: str = "auto"  # how training treats imbalanced classes: auto (sampler on imbalanced data, else none),
    # none, sampler (class-balanced batches), weights (class-weighted loss), logit (logit-adjusted loss)
    head_pool: str = "gap"  # a classifier head's global pooling: gap (average) or gmp (max; docs/line-data.md)
    pruner: str = "hyperband"  # a registered pruner (nas.strategies.PRUNERS)
    min_epochs: int = 3  # first pruning rung
    top_k: int = 4  # rung 2: this many candidates are trained at full resolution, one seed
    promote_epochs: int = 40  # rung 2's epoch cap (its schedule is sized to its time share)
    accuracy_margin: float = 1.0  # the winner: best NetScore among rung-2 candidates this close to the best
    fastest_in_band: bool = False  # ... or the lowest measured latency among them (set by --target-accuracy:
    # the band makes their MACs equal, and at 10M MACs ONNX Runtime throughput then still varies 37-119x
    # ResNet-50 between designs: results/benchmarks/band_speed.*)
    final_seeds: int = 3
    final_epochs: int = 150  # the winner's epoch cap per seed (sized to the time left when budgeted)
    patience: int = 25  # final training stops after this many epochs without a better validation
    final_input_size: int | None = None  # None = the data's own size
    ema_epochs: float | None = 5.0  # the final seeds and baselines keep, in their schedule's second half, a moving
    # average of the weights over this many epochs at most (results/benchmarks/kd_converged.*); None: raw weights
    teacher: str = "none"  # a registered teacher (evaluators.teacher.TEACHERS) or "none"
    teacher_init: str = "imagenet"
    teacher_weights: str | None = None  # a torchvision VGG16 state dict to fine-tune from
    teacher_freeze: int = 0  # freeze the lowest N of VGG16's 5 conv blocks
    teacher_epochs: int = 8
    teacher_input_size: int = 128
    kd: str = "kl"
    kd_alpha: float = 0.5
    baselines: tuple[str, ...] = ()  # trained at the final recipe after the winner, when asked for
    seed: int = 0
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ema_epochs", "proxy_input_size"):  # 0 means none (the data's size), as on the command line
            if getattr(self, name) == 0 and not isinstance(getattr(self, name), bool):
                object.__setattr__(self, name, None)
        hints = typing.get_type_hints(type(self))
        problems = [f"{flag(f.name)}: {p}" for f in fields(self)  # every field, also those added later
                    if (p := _kind_problem(getattr(self, f.name), hints[f.name], BOUNDS.get(f.name)))]
        if problems:  # before the checks below, which compare values of the right kind
            raise DefectNasError(problems[0])
        # "none" means no baselines, as on the command line: one spelling, so a run stored with
        # ("none",) resumes under a config with ()
        object.__setattr__(self, "baselines", tuple(b for b in self.baselines if b != "none"))
        if self.task not in TASKS:
            problems.append(f"--task {self.task!r}: choose {' or '.join(TASKS)}")
        if self.imbalance not in IMBALANCE_CHOICES:
            problems.append(f"--imbalance {self.imbalance!r}: choose {', '.join(IMBALANCE_CHOICES)}")
        if self.head_pool not in HEAD_POOL_CHOICES:
            problems.append(f"--head-pool {self.head_pool!r}: choose {', '.join(HEAD_POOL_CHOICES)}")
        if self.nsga2_cost not in ("macs", "latency"):
            problems.append(f"--nsga2-cost {self.nsga2_cost!r}: choose macs or latency")
        if self.objective not in OBJECTIVES:
            problems.append(f"--objective {self.objective!r}: choose {', '.join(OBJECTIVES.names())}")
        elif self.objective == "mnas" and not (self.latency_target_ms or 0) > 0:
            problems.append("--objective mnas: give its target latency with --latency-target-ms (e.g. 1.0)")
        if problem := channel_multiple_problem(self.channel_multiple):
            problems.append(problem)
        if not 0 < self.budget_flops <= MAX_BUDGET:
            problems.append(f"--budget-flops {self.budget_flops:g}: choose a positive budget up to {MAX_BUDGET:g} MACs"
                            " (the smallest the spaces reach is checked next, against your data)")
        if not (0 < self.explore_share and 0 <= self.promote_share and self.explore_share + self.promote_share < 1):
            problems.append("--explore-share and --promote-share must be positive and sum to less than 1")
        if self.min_epochs < 1 or self.min_epochs > self.epochs:
            problems.append(f"--min-epochs {self.min_epochs} must be in 1..--epochs ({self.epochs})")
        object.__setattr__(self, "kd", kd_for(self.teacher, self.kd))
        if not self.spaces:
            problems.append("--space: name at least one search space")
        if not str(self.dataset).strip():
            problems.append("--dataset is empty: name a registered dataset (neu, dagm) or a folder")
        if problems:
            raise DefectNasError(problems[0])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k not in RETIRED}
        unknown = set(d) - names
        if unknown:
            raise DefectNasError(f"search config: unknown key {sorted(unknown)[0]!r} (written by a newer defect-nas?)")
        for key in ("spaces", "baselines"):
            if isinstance(d.get(key), list):  # JSON has no tuples; anything else is checked as it is
                d[key] = tuple(d[key])
        return cls(**d)

    def differences(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The stored value of each key that differs from a stored config (config.json or a study's
        attribute) and must match to resume it; an older file's missing keys count as their
        defaults, and the stopping rule (trials, time budget) may change between sessions."""
        old = SearchConfig.from_dict({k: v for k, v in stored.items() if k not in RUN_KEYS}).to_dict()
        return {k: old[k] for k, v in self.to_dict().items() if k not in RESUMABLE and old[k] != v}

    def resuming(self, stored: dict[str, Any]) -> SearchConfig:
        """This config with each ``AUTO`` field left to the data (None) set to the value a stored run
        holds: README's command, run again over the committed reference run (stored: 100 px, from
        before the proxy size was chosen from the data), resumes it instead of refusing it."""
        kept = {k: stored[k] for k in AUTO if getattr(self, k) is None and stored.get(k) is not None}
        return replace(self, **kept) if kept else self

    def describe_differences(self, stored: dict[str, Any]) -> str:
        """All differences at once, as flags: ``--strategy 'random' (stored: 'tpe'), ...``."""
        mine = self.to_dict()
        diffs = self.differences(stored).items()
        return ", ".join(f"--{k.replace('_', '-')} {mine[k]!r} (stored: {v!r})" for k, v in diffs)

    @property
    def default_run_name(self) -> str:
        """e.g. neu-100m: the same command resumes the same run folder."""
        data = self.dataset.rstrip("/").split("/")[-1] or "data"
        return f"{data}-{self.budget_flops / 1e6:g}m"
