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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from safetensors.torch import save_file

from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError, Infeasible
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.core.utility import OBJECTIVES, utility
from defect_nas.data import Dataset, Split, load_dataset, make_split
from defect_nas.evaluators.runtime import Runtime
from defect_nas.evaluators.teacher import Teacher, TeacherConfig, ensure_teacher, usable_teacher
from defect_nas.evaluators.teacher import teacher_config as make_teacher_config
from defect_nas.evaluators.trainer import TrainConfig
from defect_nas.measure.latency import measure_latency
from defect_nas.nas.baselines import baseline_names
from defect_nas.nas.recipe import LADDER, Recipe, check_recipe, recipe_level
from defect_nas.nas.strategies import PRUNERS, make_pruner, make_sampler, metric_names, strategy
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


@dataclass
class SearchContext:
    """What every worker needs, rebuilt from the config in each process."""

    config: SearchConfig
    dataset: Dataset
    split: Split
    teacher: Teacher | None
    run_dir: Path
    deadline: float | None = None  # time.time() after which trials stop early
    runtime: Runtime = field(default_factory=Runtime)  # this process's device, threads, precision
    teacher_note: str | None = None  # why the asked-for teacher was dropped (it scored at chance)
    recipe_level: int = 0  # the study's escalation rung (nas.recipe.LADDER), raised when nothing learns

    @property
    def recipe(self) -> Recipe:
        """How this context's trainings go on this data (proxy size, imbalance, learning rate)."""
        return Recipe.for_data(self.config, self.dataset, self.recipe_level)

    @property
    def task(self) -> Task:
        return Task(self.dataset.images.shape[1], self.dataset.images.shape[-1], len(self.dataset.class_names))

    @property
    def budget(self) -> Budget:
        return Budget(self.config.budget_flops, self.config.tolerance, self.config.max_params,
                      self.config.channel_multiple)

    def teacher_config(self) -> TeacherConfig | None:
        return teacher_config(self.config)


def teacher_config(config: SearchConfig) -> TeacherConfig | None:
    return make_teacher_config(config.teacher, init=config.teacher_init, weights_file=config.teacher_weights,
                               epochs=config.teacher_epochs, input_size=config.teacher_input_size,
                               freeze_blocks=config.teacher_freeze)


def check_choices(config: SearchConfig) -> None:
    """Every named choice of a config is registered (one-line error otherwise): run before anything
    is written, and by each worker, whose config may come from another machine's study."""
    strategy(config)
    PRUNERS.get(config.pruner)
    for name in config.spaces:
        get_space(name)
    teacher_config(config)
    baseline_names(config.baselines, config.spaces, None)


TEACHER_SHARE = 0.3  # of --time-budget, at most, for a teacher not yet cached (it once took 16 of 20 minutes)


def load_context(config: SearchConfig, run_dir: Path, log=print, fingerprint: str | None = None,
                 runtime: Runtime | None = None, teacher_time_s: float | None = None) -> SearchContext:
    """Data, split and teacher of a run, loaded in this process; ``runtime``: how it trains here;
    ``teacher_time_s``: the most a teacher not yet cached may train."""
    dataset = load_dataset(config.dataset)
    if fingerprint and dataset.fingerprint != fingerprint:
        raise DefectNasError(
            f"dataset {config.dataset!r} here differs from the study's (fingerprint {dataset.fingerprint[:12]}"
            f" vs {fingerprint[:12]}); give this worker the same data"
        )
    split = make_split(dataset, seed=config.split_seed)
    tcfg = teacher_config(config)
    teacher, note = None, None
    if tcfg:
        trained = ensure_teacher(dataset, split, tcfg, log=log, runtime=runtime, time_budget_s=teacher_time_s)
        teacher, note = usable_teacher(trained, dataset, split, log)
    return SearchContext(config, dataset, split, teacher, run_dir, runtime=runtime or Runtime(), teacher_note=note)


def train_config(ctx: SearchContext, epochs: int, input_size: int | None, seed: int, **overrides) -> TrainConfig:
    """The training recipe of every run of a search (imbalance handling and learning rate from the
    data's recipe); ``overrides``: e.g. patience, time_budget_s."""
    config = ctx.config
    recipe = {**ctx.recipe.train_overrides(), **overrides}
    return TrainConfig(epochs=epochs, input_size=input_size, kd=config.kd, kd_alpha=config.kd_alpha, seed=seed,
                       **recipe)


def train_candidate(ctx: SearchContext, spec: ArchSpec, epochs: int, input_size: int | None, seed: int,
                    on_epoch=None, **overrides) -> tuple[torch.nn.Module, dict]:
    """Train ``spec`` (designed at full size) at ``input_size``; return the model and its numbers."""
    from defect_nas.evaluators.run import train_spec

    cfg = train_config(ctx, epochs, input_size, seed, **overrides)
    result = train_spec(spec, ctx.dataset, ctx.split, cfg, ctx.teacher, on_epoch, latency=False, runtime=ctx.runtime)
    return result.model, result.summary


class Objective:
    """One trial: generate, fit, check constraints, train (pruned per epoch), score."""

    def __init__(self, ctx: SearchContext):
        self.ctx = ctx
        self.multi = strategy(ctx.config).multi_objective

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
            spec = fit(proposal, ctx.budget)
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

        def on_epoch(epoch: int, val_acc: float, record: dict) -> None:
            if not self.multi:
                trial.report(val_acc, epoch)
                if trial.should_prune():
                    trial.set_user_attr("val_accuracy", val_acc)
                    raise optuna.TrialPruned(f"pruned at epoch {epoch} (val {val_acc:.1f}%)")
            if ctx.deadline is not None and time.time() > ctx.deadline:
                trial.set_user_attr("val_accuracy", val_acc)
                trial.set_user_attr("stopped", "time budget")
                raise optuna.TrialPruned("time budget reached")

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
        weights = ctx.run_dir / "trials" / f"{trial.number}.safetensors"
        weights.parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights,
                  metadata={"arch": spec.to_json(indent=None), "input_size": str(r["input_size"])})
        if self.multi:
            cost2 = lat if cfg.nsga2_cost == "latency" else float(c.macs)
            return r["val_accuracy"], cost2, float(c.params)
        return score


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


def create_or_load_study(config: SearchConfig, storage, name: str, worker: int = 0,
                         trials_before: int | None = None) -> optuna.Study:
    """The study, its sampler seeded apart from earlier sessions': ``trials_before`` is how many trials
    the study held when this session began (counted here when not given; the search counts once and
    hands it to its workers, which open the study after prototypes were queued)."""
    if trials_before is None:
        try:
            trials_before = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
        except KeyError:
            trials_before = 0
    study = optuna.create_study(study_name=name, storage=storage, directions=strategy(config).directions,
                                sampler=make_sampler(config, worker, trials_before), pruner=make_pruner(config),
                                load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", config.to_dict())
        with warnings.catch_warnings():  # marked experimental by optuna
            warnings.simplefilter("ignore")
            study.set_metric_names(metric_names(config))
    else:
        if config.differences(stored):
            raise DefectNasError(f"study {name!r} was made with other settings: {config.describe_differences(stored)};"
                                 " pass --run NAME for a new search")
    return study


def enqueue_prototypes(study: optuna.Study, config: SearchConfig, task: Task) -> int:
    """Generative synthesis starts from the prototypes: enqueue them once per study."""
    if study.user_attrs.get("prototypes_enqueued"):
        return 0
    n = 0
    for space_name in config.spaces:
        for pname in get_space(space_name).prototypes(task):
            study.enqueue_trial({}, user_attrs={"prototype": f"{space_name}/{pname}"})
            n += 1
    study.set_user_attr("prototypes_enqueued", True)
    return n


def finished_count(study: optuna.Study, running: bool = False) -> int:
    """Trials that count towards ``--trials``: finished ones, and with ``running`` those under way."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    states += (optuna.trial.TrialState.RUNNING,) if running else ()
    return len(study.get_trials(deepcopy=False, states=states))


def run_worker(ctx: SearchContext, study: optuna.Study, n_trials: int | None, deadline: float | None) -> None:
    """The loop of one worker process: trials until the trial count or the deadline is reached."""
    ctx.deadline = deadline
    ctx.recipe_level = recipe_level(study)
    objective = Objective(ctx)
    callbacks = []
    if n_trials is not None:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        callbacks.append(optuna.study.MaxTrialsCallback(n_trials, states=states))
    while True:  # trials still running elsewhere count: with only finished ones, 2 workers ended with N + 1
        if n_trials is not None and finished_count(study, running=True) >= n_trials:
            return
        remaining = None if deadline is None else deadline - time.time()
        if remaining is not None and remaining <= 0:
            return
        level = check_recipe(study, ctx.dataset, ctx.split)
        if level is None and ctx.config.min_accuracy > 0:
            return
        if level is None:  # --min-accuracy 0 never gives up: the last rung goes on to the trial count or deadline
            level = len(LADDER) - 1
        ctx.recipe_level = level
        study.optimize(objective, n_trials=1, timeout=remaining, callbacks=callbacks, catch=(RuntimeError,),
                       gc_after_trial=True)


def worker_process(config_dict: dict, run_dir: str, storage_url: str, study_name: str, worker: int,
                   n_trials: int | None, deadline: float | None, threads: int = 1, device: str = "cpu",
                   trials_before: int = 0) -> None:
    """Entry point of a spawned local worker (one thread each: two 1-thread processes train
    ~1.45x more images/s than one 2-thread process on this machine kind); with ``device`` cuda
    the workers go round-robin over the GPUs."""
    import warnings

    from defect_nas.nas.storage import open_storage

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = Runtime(device=device, threads=threads).for_worker(worker).apply()
    config = SearchConfig.from_dict(config_dict)
    check_choices(config)
    ctx = load_context(config, Path(run_dir), log=lambda m: None, runtime=runtime)
    study = create_or_load_study(config, open_storage(storage_url), study_name, worker, trials_before)
    try:
        run_worker(ctx, study, n_trials, deadline)
    except KeyboardInterrupt:
        pass
