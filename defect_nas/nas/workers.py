"""The exploration's worker processes: each opens the shared optuna study (SQLite or PostgreSQL),
moves it up the recipe ladder when nothing learns, and runs trials until the trial count or the
deadline; ``worker_process`` is what ``nas.procs.explore`` spawns."""

from __future__ import annotations

import fcntl
import time
import warnings
from pathlib import Path

import optuna

from defect_nas.core.errors import DefectNasError
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.evaluators.runtime import Runtime
from defect_nas.nas.context import SearchContext, check_choices, ensure_recipe_teacher, load_context
from defect_nas.nas.procs import WorkerJob
from defect_nas.nas.recipe import LADDER, RECIPE_TEACHER_ATTR, check_recipe, recipe_level
from defect_nas.nas.strategies import make_pruner, make_sampler, metric_names, strategy
from defect_nas.nas.trial import Objective
from defect_nas.search_spaces.base import Task, get_space


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


class AskLock:
    """Local workers take turns from counting the trials to their next trial's start: two that both
    counted N-1 trials each started one, and a 5-trial run ended with 6 (CI, 2026-12-05). A file lock
    in the run folder serialises that step on this machine (PostgreSQL workers elsewhere are not in it)."""

    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.file = RunFolder(run_dir).ask_lock.open("a")

    def acquire(self) -> None:
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)


def run_worker(ctx: SearchContext, study: optuna.Study, n_trials: int | None, deadline: float | None) -> None:
    """The loop of one worker process: trials until the trial count or the deadline is reached."""
    ctx.deadline = deadline
    ctx.recipe_level = recipe_level(study)
    lock = AskLock(ctx.run_dir)
    objective = Objective(ctx, on_start=lock.release)
    callbacks = []
    if n_trials is not None:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        callbacks.append(optuna.study.MaxTrialsCallback(n_trials, states=states))
    while True:
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
        ensure_recipe_teacher(ctx)  # the ladder's transfer rung fine-tunes its teacher once; other rungs: nothing
        if ctx.recipe_teacher is not None and RECIPE_TEACHER_ATTR not in study.user_attrs:
            study.set_user_attr(RECIPE_TEACHER_ATTR, ctx.recipe_teacher)
        lock.acquire()  # released as soon as the next trial exists (Objective.on_start), or below
        try:  # trials running elsewhere count: with only finished ones, 2 workers ended with N + 1
            if n_trials is not None and finished_count(study, running=True) >= n_trials:
                return
            remaining = None if deadline is None else deadline - time.time()  # a teacher may have taken some
            if remaining is not None and remaining <= 0:
                return
            study.optimize(objective, n_trials=1, timeout=remaining, callbacks=callbacks, catch=(RuntimeError,),
                           gc_after_trial=True)
        finally:
            lock.release()


def worker_process(job: WorkerJob, worker: int) -> None:
    """Entry point of a spawned local worker (one thread each: two 1-thread processes train
    ~1.45x more images/s than one 2-thread process on this machine kind); with ``device`` cuda
    the workers go round-robin over the GPUs."""
    import warnings

    from defect_nas.nas.storage import open_storage

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = Runtime(device=job.device, threads=job.threads).for_worker(worker).apply()
    config = SearchConfig.from_dict(job.config)
    check_choices(config)
    ctx = load_context(config, Path(job.run_dir), log=lambda m: None, runtime=runtime)
    study = create_or_load_study(config, open_storage(job.storage_url), job.study_name, worker, job.trials_before)
    try:
        run_worker(ctx, study, job.n_trials, job.deadline)
    except KeyboardInterrupt:
        pass
