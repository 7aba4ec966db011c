"""The generator's strategies (optuna samplers) and the inquisitor's pruners, by name.

A strategy says how proposals are drawn and what the study optimises: single-objective strategies
maximise validation NetScore and may prune; multi-objective ones (NSGA-II) return (accuracy,
cost, params) and train every candidate to the end (optuna prunes single-objective studies only).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from defect_nas.core.registry import Registry
from defect_nas.core.search_config import SearchConfig

if TYPE_CHECKING:  # optuna is imported when a sampler or pruner is made, not to list the names
    import optuna


@dataclass(frozen=True)
class Strategy:
    sampler: Callable[[int], optuna.samplers.BaseSampler]  # seed -> sampler
    multi_objective: bool = False

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize", "minimize"] if self.multi_objective else ["maximize"]


def metric_names(config: SearchConfig) -> list[str]:
    """The objectives' names, as optuna-dashboard and ``study.trials_dataframe`` show them."""
    if strategy(config).multi_objective:
        return ["val_accuracy_pct", "latency_ms" if config.nsga2_cost == "latency" else "macs", "params"]
    return ["val_netscore_db" if config.objective == "netscore" else f"val_{config.objective.replace('-', '_')}"]


STRATEGIES: Registry[Strategy] = Registry("strategy", "--strategy")
def _optuna():
    import optuna

    return optuna


STRATEGIES.add("tpe", Strategy(lambda seed: _optuna().samplers.TPESampler(
    seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=8)))
STRATEGIES.add("nsga2", Strategy(lambda seed: _optuna().samplers.NSGAIISampler(seed=seed, population_size=16),
                                 multi_objective=True))
STRATEGIES.add("random", Strategy(lambda seed: _optuna().samplers.RandomSampler(seed=seed)))

PRUNERS: Registry[Callable[[SearchConfig], optuna.pruners.BasePruner]] = Registry("pruner", "--pruner")
PRUNERS.add("hyperband", lambda c: _optuna().pruners.HyperbandPruner(
    min_resource=c.min_epochs, max_resource=c.epochs, reduction_factor=3))
PRUNERS.add("sha", lambda c: _optuna().pruners.SuccessiveHalvingPruner(min_resource=c.min_epochs, reduction_factor=3))
PRUNERS.add("none", lambda c: _optuna().pruners.NopPruner())


def strategy(config: SearchConfig) -> Strategy:
    return STRATEGIES.get(config.strategy)


def make_sampler(config: SearchConfig, worker: int, trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """Worker ``worker``'s sampler; seeded apart so that workers do not draw the same proposals, and
    apart from earlier sessions of the same study (``trials_before`` = trials it already holds): a
    resumed sampler with the fresh seed replayed its draws (3 of 6 trials after a kill -9 and resume
    retrained finished architectures). A fresh study (0 trials) keeps the seed it always had."""
    with warnings.catch_warnings():  # multivariate/group TPE are marked experimental by optuna
        warnings.simplefilter("ignore")
        return strategy(config).sampler(config.seed * 1000 + worker + 1_000_003 * trials_before)


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    factory = PRUNERS.get(config.pruner)
    return _optuna().pruners.NopPruner() if strategy(config).multi_objective else factory(config)
