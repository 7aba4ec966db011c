"""What every trial, rung-2 candidate and final seed of one search run shares: the data, its split,
the teacher, the budget and the recipe (``SearchContext``), loaded once per process, and how one
candidate is trained in it (``train_candidate``)."""

from __future__ import annotations

import fcntl
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from defect_nas.core.budget import Budget
from defect_nas.core.errors import DefectNasError
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.data import Dataset, Split, load_dataset, make_split
from defect_nas.evaluators.runtime import Runtime
from defect_nas.evaluators.teacher import Teacher, TeacherConfig, ensure_teacher, usable_teacher
from defect_nas.evaluators.teacher import teacher_config as make_teacher_config
from defect_nas.evaluators.trainer import TrainConfig
from defect_nas.nas.baselines import baseline_names
from defect_nas.nas.recipe import RECIPE_KD, Recipe
from defect_nas.nas.strategies import PRUNERS, strategy
from defect_nas.search_spaces.base import Task, get_space


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
    recipe_teacher: dict | None = None  # the rung's transfer teacher once fine-tuned here: its scores, used or not

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


def ensure_recipe_teacher(ctx: SearchContext, log=lambda m: None) -> None:
    """Fine-tune (or load from the cache) the transfer teacher of the study's recipe rung, once per
    process, and keep it when it learned (``usable_teacher``: a teacher at chance is dropped). One
    worker trains it under the run's teacher lock, inside at most TEACHER_SHARE of the time budget and
    half of the exploration left; the others, and the pool processes of rung 2 and the final seeds,
    wait and load the cached one."""
    recipe = ctx.recipe
    if recipe.teacher == "none" or ctx.recipe_teacher is not None:
        return
    config = ctx.config
    tcfg = make_teacher_config(recipe.teacher, init="imagenet", epochs=config.teacher_epochs,
                               input_size=config.teacher_input_size)
    cap = None if config.time_budget_s is None else TEACHER_SHARE * config.time_budget_s
    if cap is not None and ctx.deadline is not None:
        cap = min(cap, max(1.0, (ctx.deadline - time.time()) / 2))
    lock = RunFolder(ctx.run_dir).teacher_lock
    with open(lock, "a+") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            trained = ensure_teacher(ctx.dataset, ctx.split, tcfg, log=log, runtime=ctx.runtime, time_budget_s=cap)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    ctx.teacher, ctx.teacher_note = usable_teacher(trained, ctx.dataset, ctx.split, log)
    ctx.recipe_teacher = {"arch": recipe.teacher, "val_accuracy": trained.val_accuracy,
                          "test_accuracy": trained.test_accuracy, "seconds": trained.seconds,
                          "used": ctx.teacher is not None, "note": ctx.teacher_note}


def train_config(ctx: SearchContext, epochs: int, input_size: int | None, seed: int, **overrides) -> TrainConfig:
    """The training recipe of every run of a search (imbalance handling and learning rate from the
    data's recipe; distillation from the recipe's transfer teacher when it learned); ``overrides``:
    e.g. patience, time_budget_s."""
    config = ctx.config
    recipe = {**ctx.recipe.train_overrides(), **overrides}
    if ctx.teacher is None:  # none asked for, or dropped at chance: every trial once died on kd without logits
        kd = "none"
    elif ctx.recipe.teacher != "none":
        kd = RECIPE_KD
    else:
        kd = config.kd
    return TrainConfig(epochs=epochs, input_size=input_size, kd=kd, kd_alpha=config.kd_alpha, seed=seed, **recipe)


def train_candidate(ctx: SearchContext, spec: ArchSpec, epochs: int, input_size: int | None, seed: int,
                    on_epoch=None, **overrides) -> tuple[torch.nn.Module, dict]:
    """Train ``spec`` (designed at full size) at ``input_size``; return the model and its numbers."""
    from defect_nas.evaluators.run import train_spec

    cfg = train_config(ctx, epochs, input_size, seed, **overrides)
    result = train_spec(spec, ctx.dataset, ctx.split, cfg, ctx.teacher, on_epoch, latency=False, runtime=ctx.runtime)
    return result.model, result.summary
