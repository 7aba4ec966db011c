"""The segmentation search (``search --task segment``): segmenters (a backbone with Huang et al.'s decoder)
searched under the budget and scored by validation mIoU, in the classification search's phases.

Shared with ``nas.run``: the optuna study with its sampler and pruner (``nas.workers``, ``nas.strategies``),
the spaces' prototypes as the first trials, ``budget.fit``, the NetScore utility (mIoU in accuracy's
place), the time plan's shares (``nas.plan``), the trial rows, rung 2's winner rule (``phases.choose_winner``)
and the Pareto front. Its own: one process trains (a CPU's cores go to one segmenter's convolutions), and
the classification-only parts are absent (teacher and distillation, the recipe ladder, DAGM voting, the
OK/NG operating point, baselines), so this driver stays small instead of threading "if segment" through them.

Phases: exploration at the proxy size (pruned per epoch on validation mIoU), rung 2 (the ``top_k`` best at
full size, one seed each), the winner's ``final_seeds`` seeds at full size, and export of the seed with the
best validation mIoU; test mIoU is recorded, never used to choose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from safetensors.torch import save_file

from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError, Infeasible
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.core.utility import OBJECTIVES, utility
from defect_nas.data.masks import MaskDataset, mask_split, masks_at
from defect_nas.data.splits import Split
from defect_nas.evaluators.runtime import Runtime
from defect_nas.evaluators.seg_metrics import image_defect_accuracy
from defect_nas.evaluators.segment import SegData, evaluate, predict_masks, train_segmenter
from defect_nas.evaluators.trainer import TrainConfig
from defect_nas.nas.plan import TimePlan
from defect_nas.nas.strategies import strategy
from defect_nas.nas.trial import epoch_reporter, propose, screen_latency
from defect_nas.search_spaces.base import Task, get_space
from defect_nas.search_spaces.build import build

Log = Callable[[str], None]
# field -> the value segmenting needs (a segmenter has a decoder, no pooled head)
CLASSIFICATION_ONLY = {"teacher": "none", "baselines": (), "imbalance": "auto", "head_pool": "gap"}


def check_segment_config(config: SearchConfig) -> None:
    """Settings that only mean something for classifiers are refused in one line, not silently ignored."""
    for name, value in CLASSIFICATION_ONLY.items():
        if getattr(config, name) != value:
            flag = "--" + name.replace("_", "-")
            raise DefectNasError(f"{flag}: a classification setting; a segmentation search has no teacher, baselines, "
                                 f"imbalance handling or pooled head: leave {flag} out")


def proxy_size(config: SearchConfig, size: int) -> int:
    """Search trials train at ``--proxy-input-size``, else half the data's size from 128 px up (4x fewer MACs)."""
    return config.proxy_input_size or (size // 2 if size >= 128 else size)


@dataclass
class SegSearch:
    """One segmentation run's data, split and device; ``train`` is the one path every phase trains through."""

    config: SearchConfig
    ds: MaskDataset
    split: Split
    run_dir: Path
    runtime: Runtime
    deadline: float | None = None  # exploration's end (time.time())
    _sized: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return Task(int(self.ds.images.shape[1]), int(self.ds.images.shape[-1]), self.ds.num_classes, segment=True)

    @property
    def budget(self) -> Budget:
        c = self.config
        return Budget(c.budget_flops, c.tolerance, c.max_params, c.channel_multiple)

    def at(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if size not in self._sized:
            self._sized[size] = masks_at(self.ds, size)
        return self._sized[size]

    def train(self, spec: ArchSpec, epochs: int, size: int, seed: int, on_epoch=None,
              time_s: float | None = None) -> tuple[torch.nn.Module, dict]:
        """Train ``spec`` (designed at full size) at ``size``; its validation and test scores at that size."""
        spec = spec.at_size(size)
        torch.manual_seed(seed)  # the seed fixes the initial weights too
        model = build(spec)
        x, m = self.at(size)
        s = self.split
        tcfg = TrainConfig(epochs=epochs, seed=seed, time_budget_s=time_s)
        r = train_segmenter(model, SegData(x[s.train], m[s.train], x[s.val], m[s.val], self.ds.class_names), tcfg,
                            self.runtime, on_epoch)
        test, _ = evaluate(model, x[s.test], m[s.test], self.ds.num_classes, self.runtime)
        pred = predict_masks(model, x[s.test], self.runtime)
        model.cpu()
        names = self.ds.class_names
        return model, {"val_miou": r.val.miou, "test_miou": test.miou, "val": r.val.as_dict(names),
                       "test": test.as_dict(names), "test_image_defect_accuracy": image_defect_accuracy(
                           pred, m[s.test].numpy()), "input_size": size, "seed": seed, "epochs_run": r.epochs_run,
                       "planned_epochs": epochs, "best_epoch": r.best_epoch, "stop_reason": r.stop_reason,
                       "train_seconds": round(r.seconds, 1), "train_images_per_second": round(r.images_per_second, 1),
                       "train": tcfg.to_dict(), "history": r.history}


def load_search(config: SearchConfig, run_dir: Path, runtime: Runtime) -> SegSearch:
    from defect_nas.data.registry import load_segmentation

    check_segment_config(config)
    ds = load_segmentation(config.dataset)
    run = SegSearch(config, ds, mask_split(ds, config.split_seed), run_dir, runtime)
    check_feasible(run)
    return run


def check_feasible(run: SegSearch) -> None:
    """A budget no space's segmenter meets fails in one line before anything is written (as classification's
    ``check_budget_feasible``): ten random proposals per space, one that fits is enough."""
    from defect_nas.search_spaces.base import RandomTrial

    reason = ""
    for name in run.config.spaces:
        for seed in range(10):
            try:
                fit(get_space(name).propose(RandomTrial(seed), run.task), run.budget)
                return
            except Infeasible as e:
                reason = str(e)
    raise DefectNasError(f"no segmenter of {', '.join(run.config.spaces)} meets {run.config.budget_flops:g} MACs: "
                         f"{reason}")


class SegObjective:
    """One trial: generate (or take a queued prototype), fit to the budget, train at the proxy size with
    the pruner watching validation mIoU each epoch, and return the utility (NetScore of val mIoU)."""

    def __init__(self, run: SegSearch):
        self.run = run
        self.multi = strategy(run.config).multi_objective

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float, float]:
        run, cfg = self.run, self.run.config
        proto = trial.user_attrs.get("prototype")
        if proto:
            space_name, _, pname = proto.partition("/")
            proposal = get_space(space_name).prototypes(run.task)[pname]
        else:
            space_name, proposal = propose(trial, cfg, run.task)
        trial.set_user_attr("space", space_name)
        penalty = (0.0, 1e18, 1e18) if self.multi else 0.0
        try:
            spec = fit(proposal, run.budget)
        except Infeasible as e:
            trial.set_user_attr("infeasible", str(e))
            trial.set_constraint("budget", 1.0)
            return penalty
        c = cost(spec)
        for key, value in (("spec", spec.to_json(indent=None)), ("digest", spec.digest()), ("macs", c.macs),
                           ("params", c.params)):
            trial.set_user_attr(key, value)
        trial.set_constraint("budget", run.budget.violation(c.macs, c.params))
        lat = None
        if OBJECTIVES.get(cfg.objective).needs_latency or cfg.max_latency_ms is not None:
            lat, backend = screen_latency(spec, True)
            trial.set_user_attr("latency_ms", lat)
            trial.set_user_attr("latency_backend", backend)
            if cfg.max_latency_ms is not None:  # the sampler learns the cap, as in classification
                trial.set_constraint("latency", (lat - cfg.max_latency_ms) / cfg.max_latency_ms)
            if cfg.max_latency_ms is not None and lat > cfg.max_latency_ms:
                return penalty
        if cfg.max_params is not None and c.params > cfg.max_params:
            return penalty

        on_epoch = epoch_reporter(trial, self.multi, run.deadline, "val mIoU")
        size = proxy_size(cfg, run.task.input_size)
        trial.set_user_attr("fidelity", {"epochs": cfg.epochs, "input_size": size})
        model, r = run.train(spec, cfg.epochs, size, cfg.seed, on_epoch)
        # val_accuracy / test_accuracy hold mIoU: the rows, the front and rung 2 read those keys for any task
        for key, value in (("val_accuracy", r["val_miou"]), ("test_accuracy", r["test_miou"]),
                           ("epochs_run", r["epochs_run"]), ("train_seconds", r["train_seconds"])):
            trial.set_user_attr(key, value)
        score = utility(cfg.objective, r["val_miou"], c.params, c.macs, lat, cfg.latency_target_ms)
        trial.set_user_attr("netscore", measured_netscore(r["val_miou"], c.params, c.macs))
        trial.set_user_attr("utility", score)
        weights = RunFolder(run.run_dir).trial_weights(trial.number)
        weights.parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights,
                  metadata={"arch": spec.to_json(indent=None), "input_size": str(size)})
        return (r["val_miou"], float(c.macs), float(c.params)) if self.multi else score


def explore(run: SegSearch, study: optuna.Study, plan: TimePlan, log: Log) -> None:
    """Trials until ``--trials`` finished or exploration's share of the time budget is spent."""
    from defect_nas.nas.workers import finished_count

    cfg = run.config
    run.deadline = plan.explore_end
    objective = SegObjective(run)
    while True:
        if cfg.trials is not None and finished_count(study) >= cfg.trials:
            return
        left = None if plan.explore_end is None else plan.explore_end - time.time()
        if left is not None and left <= 0:
            return
        study.optimize(objective, n_trials=1, timeout=left, catch=(RuntimeError,), gc_after_trial=True,
                       callbacks=[lambda _, t: log(_trial_line(t))])


def _trial_line(t: optuna.trial.FrozenTrial) -> str:
    a = t.user_attrs
    if "infeasible" in a:
        return f"trial {t.number}: infeasible ({a['infeasible']})"
    val = a.get("val_accuracy")
    return (f"trial {t.number}: {t.state.name.lower()}" + (f", val mIoU {val:.1f}%" if val is not None else "")
            + f" at {a.get('macs', 0) / 1e6:.1f}M MACs")
