"""The generator's strategies (optuna samplers) and the inquisitor's pruners, by name.

A strategy says how proposals are drawn and what the study optimises: single-objective strategies
maximise validation NetScore and may prune; multi-objective ones (NSGA-II) return (accuracy,
cost, params) and train every candidate to the end (optuna prunes single-objective studies only).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from defect_nas.core.registry import Registry
from defect_nas.core.search_config import SearchConfig


@dataclass(frozen=True)
class Strategy:
    sampler: Callable[[int], optuna.samplers.BaseSampler]  # seed -> sampler
    multi_objective: bool = False

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize", "minimize"] if self.multi_objective else ["maximize"]


STRATEGIES: Registry[Strategy] = Registry("strategy", "--strategy")
STRATEGIES.add("tpe", Strategy(lambda seed: optuna.samplers.TPESampler(
    seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=8)))
STRATEGIES.add("nsga2", Strategy(lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=16),
                                 multi_objective=True))
STRATEGIES.add("random", Strategy(lambda seed: optuna.samplers.RandomSampler(seed=seed)))

PRUNERS: Registry[Callable[[SearchConfig], optuna.pruners.BasePruner]] = Registry("pruner", "--pruner")
PRUNERS.add("hyperband", lambda c: optuna.pruners.HyperbandPruner(
    min_resource=c.min_epochs, max_resource=c.epochs, reduction_factor=3))
PRUNERS.add("sha", lambda c: optuna.pruners.SuccessiveHalvingPruner(min_resource=c.min_epochs, reduction_factor=3))
PRUNERS.add("none", lambda c: optuna.pruners.NopPruner())


def strategy(config: SearchConfig) -> Strategy:
    return STRATEGIES.get(config.strategy)


def make_sampler(config: SearchConfig, worker: int) -> optuna.samplers.BaseSampler:
    """Worker ``worker``'s sampler; seeded apart so that workers do not draw the same proposals."""
    with warnings.catch_warnings():  # multivariate/group TPE are marked experimental by optuna
        warnings.simplefilter("ignore")
        return strategy(config).sampler(config.seed * 1000 + worker)


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    factory = PRUNERS.get(config.pruner)
    return optuna.pruners.NopPruner() if strategy(config).multi_objective else factory(config)
