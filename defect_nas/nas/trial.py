"""The generator-inquisitor loop on an optuna study (generative synthesis, after TinyDefectNet).

- Generator: the optuna sampler over a space's choices (TPE by default, NSGA-II, or random),
  seeded with the space's prototypes as the first trials. ``budget.fit`` makes every proposal
  feasible before any training; proposals that cannot be made feasible (or break the params /
  latency caps) are told to the sampler through optuna's constraints, so it learns from them.
- Inquisitor: the fast trainer (with distillation from the cached teacher) at a proxy fidelity,
  reporting validation accuracy each epoch so the pruner (Hyperband / successive halving) stops
  weak candidates early. Its verdict, NetScore from *validation* accuracy, is told to the study.
  Test accuracy is recorded for the report but never used to choose.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch
from safetensors.torch import save_file

from defect_nas.core.budget import fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError, Infeasible
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.core.utility import OBJECTIVES, utility
from defect_nas.measure.latency import measure_latency
from defect_nas.nas.context import SearchContext, train_candidate
from defect_nas.nas.strategies import strategy
from defect_nas.search_spaces.base import Task, get_space
from defect_nas.search_spaces.build import build

PENALTY = 0.0  # objective value of a candidate that was never trained (infeasible)


class PrefixedTrial:
    """Names a space's parameters ``<space>.<name>`` so several spaces share one study."""

    def __init__(self, trial: Any, prefix: str):
        self.trial, self.prefix = trial, prefix

    def suggest_int(self, name: str, *a, **k) -> int:
        return self.trial.suggest_int(f"{self.prefix}.{name}", *a, **k)

    def suggest_categorical(self, name: str, choices) -> Any:
        return self.trial.suggest_categorical(f"{self.prefix}.{name}", choices)

    def suggest_float(self, name: str, *a, **k) -> float:
        return self.trial.suggest_float(f"{self.prefix}.{name}", *a, **k)


def propose(trial: Any, config: SearchConfig, task: Task) -> tuple[str, ArchSpec]:
    """The generator's draw: a space (when several) and an architecture from it."""
    if len(config.spaces) == 1:
        name = config.spaces[0]
        return name, get_space(name).propose(trial, task)
    name = trial.suggest_categorical("space", list(config.spaces))
    return name, get_space(name).propose(PrefixedTrial(trial, name), task)


class Objective:
    """One trial: generate, fit, check constraints, train (pruned per epoch), score."""

    def __init__(self, ctx: SearchContext, on_start: Callable[[], None] | None = None):
        self.ctx = ctx
        self.multi = strategy(ctx.config).multi_objective
        self.on_start = on_start  # called once the trial exists (RUNNING): the worker's ask lock is released

    def _penalty(self) -> float | tuple[float, float, float]:
        return (0.0, 1e18, 1e18) if self.multi else PENALTY

    @staticmethod
    def _trained_before(trial: optuna.Trial, digest: str, level: int) -> optuna.trial.FrozenTrial | None:
        """A completed trial of this study with the same fitted architecture (7-12% of proposals
        land on one already trained after ``budget.fit``); the seed and fidelity are the study's."""
        for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if (t.user_attrs.get("digest") == digest and t.user_attrs.get("val_accuracy") is not None
                    and t.user_attrs.get("recipe_level", 0) == level):
                return t
        return None

    def _latency_constraint(self, trial: optuna.Trial, lat: float) -> None:
        cap = self.ctx.config.max_latency_ms
        if cap is not None:
            trial.set_constraint("latency", (lat - cap) / cap)

    def _floor_constraint(self, trial: optuna.Trial, val: float) -> None:
        floor = self.ctx.config.min_accuracy
        if floor > 0:
            trial.set_constraint("accuracy_floor", floor - val)

    def _reuse(self, trial: optuna.Trial, same: optuna.trial.FrozenTrial) -> float | tuple[float, ...]:
        """Record ``same``'s result as this trial's without training again (``reused_from`` says so)."""
        keys = ("latency_ms", "latency_backend", "fidelity", "val_accuracy", "test_accuracy", "epochs_run",
                "train_seconds", "netscore", "utility")
        for key in keys:
            if key in same.user_attrs:
                trial.set_user_attr(key, same.user_attrs[key])
        trial.set_user_attr("reused_from", same.number)
        if same.user_attrs.get("latency_ms") is not None:
            self._latency_constraint(trial, same.user_attrs["latency_ms"])
        self._floor_constraint(trial, same.user_attrs["val_accuracy"])
        weights = self.ctx.run_dir / "trials"
        if (weights / f"{same.number}.safetensors").is_file():
            shutil.copyfile(weights / f"{same.number}.safetensors", weights / f"{trial.number}.safetensors")
        return tuple(same.values) if self.multi else same.value

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float, float]:
        if self.on_start is not None:
            self.on_start()
        cfg, ctx = self.ctx.config, self.ctx
        task = ctx.task
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        proto = trial.user_attrs.get("prototype")
        if proto:  # an enqueued prototype of generative synthesis: the seed, not a draw
            space_name, _, pname = proto.partition("/")
            proposal = get_space(space_name).prototypes(task)[pname]
            trial.set_user_attr("space", space_name)
        else:
            space_name, proposal = propose(trial, cfg, task)
            trial.set_user_attr("space", space_name)
        try:
            spec = fit(ctx.recipe.shape_head(proposal), ctx.budget)
        except Infeasible as e:
            trial.set_user_attr("infeasible", str(e))
            trial.set_constraint("budget", 1.0)
            return self._penalty()
        c = cost(spec)
        trial.set_user_attr("spec", spec.to_json(indent=None))
        trial.set_user_attr("digest", spec.digest())
        trial.set_user_attr("macs", c.macs)
        trial.set_user_attr("params", c.params)
        trial.set_constraint("budget", ctx.budget.violation(c.macs, c.params))
        same = self._trained_before(trial, spec.digest(), ctx.recipe_level)
        if same is not None:  # the fitted spec was already trained at this fidelity and seed: same result
            return self._reuse(trial, same)
        # timed beside other trials' training, so only a screen: the fastest of 7 runs (contention only adds
        # time), and the designs the run compares are timed again apart from training (nas/latency.py)
        lat, backend = screen_latency(spec, OBJECTIVES.get(cfg.objective).needs_latency
                                      or (self.multi and cfg.nsga2_cost == "latency"))
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("latency_backend", backend)
        self._latency_constraint(trial, lat)
        if cfg.max_latency_ms is not None and lat > cfg.max_latency_ms:
            return self._penalty()
        if cfg.max_params is not None and c.params > cfg.max_params:
            return self._penalty()

        on_epoch = epoch_reporter(trial, self.multi, ctx.deadline)
        recipe = ctx.recipe
        trial.set_user_attr("fidelity", {"epochs": cfg.epochs, "input_size": recipe.proxy_input_size})
        trial.set_user_attr("recipe_level", recipe.level)
        try:
            model, r = train_candidate(ctx, spec, cfg.epochs, recipe.proxy_input_size, cfg.seed, on_epoch)
        except torch.cuda.OutOfMemoryError as e:  # this trial fails (the sampler sees FAIL), the run goes on
            reason = str(e).splitlines()[0][:160]
            trial.set_user_attr("failure", f"CUDA out of memory on {ctx.runtime.device}: {reason}")
            raise
        finally:
            ctx.runtime.release()  # trials sharing a GPU get its memory back
        score = utility(cfg.objective, r["val_accuracy"], c.params, c.macs, lat, cfg.latency_target_ms)
        for key in ("val_accuracy", "test_accuracy", "epochs_run", "train_seconds"):
            trial.set_user_attr(key, r[key])
        trial.set_user_attr("netscore", measured_netscore(r["val_accuracy"], c.params, c.macs))
        trial.set_user_attr("utility", score)
        self._floor_constraint(trial, r["val_accuracy"])
        weights = RunFolder(ctx.run_dir).trial_weights(trial.number)
        weights.parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights,
                  metadata={"arch": spec.to_json(indent=None), "input_size": str(r["input_size"])})
        if self.multi:
            cost2 = lat if cfg.nsga2_cost == "latency" else float(c.macs)
            return r["val_accuracy"], cost2, float(c.params)
        return score


def epoch_reporter(trial: optuna.Trial, multi: bool, deadline: float | None, metric: str = "val"
                   ) -> Callable[[int, float, dict], None]:
    """The trainer's per-epoch callback of a trial: the validation score to the pruner (single-objective
    studies; the trial is pruned when it says so) and a stop at the exploration's deadline, each recording
    the last validation score (``val_accuracy``; a segmenter's mIoU) on the trial."""

    def on_epoch(epoch: int, val: float, record: dict) -> None:
        if not multi:
            trial.report(val, epoch)
            if trial.should_prune():
                trial.set_user_attr("val_accuracy", val)
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({metric} {val:.1f}%)")
        if deadline is not None and time.time() > deadline:
            trial.set_user_attr("val_accuracy", val)
            trial.set_user_attr("stopped", "time budget")
            raise optuna.TrialPruned("time budget reached")

    return on_epoch


def screen_latency(spec: ArchSpec, deployed: bool) -> tuple[float, str]:
    """Batch-1 latency screen of a trial (fastest of 7: contention only adds time) and its backend. When
    the objective scores latency it is what deploys, ONNX Runtime; eager PyTorch (cheaper, no export)
    otherwise, and when a design cannot be exported (``latency_backend`` in the trial says which)."""
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    if deployed:
        try:
            return measure_latency(build(spec), shape, backend="onnx", batch_size_throughput=None, warmup=2,
                                   repeats=7, threads=1).latency_ms_min, "onnx"
        except DefectNasError:
            pass
    return measure_latency(build(spec), shape, backend="eager", batch_size_throughput=None, warmup=2,
                           repeats=7).latency_ms_min, "eager"
