"""The shapes of what a search records, as typed dicts.

Why TypedDict and not dataclasses: every one of these is written as is to CSV (trials.csv,
learning_curves.csv) or JSON (summary.json) and read back by ``report``, pandas and users' scripts;
a TypedDict gives the type checker and the reader the field list and types while the records stay
the plain rows those files hold. ``total=False`` marks records whose fields depend on the run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict


class TrialRow(TypedDict):
    """One search trial, a row of trials.csv (``rows.trial_rows``)."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    space: str | None
    prototype: str | None
    spec_digest: str | None
    macs: int | None
    params: int | None
    fidelity_epochs: int | None
    fidelity_input_size: int | None
    epochs_run: int | None
    val_accuracy: float | None  # percent, at the trial's (proxy) fidelity
    test_accuracy: float | None  # recorded, never used to choose
    latency_search_ms: float | None  # eager, fastest of 7 runs beside training trials: a screen only
    latency_ms: float | None  # ONNX Runtime batch 1, timed apart from training (compared designs only)
    latency_cv: float | None  # spread of that measurement (std / mean of 5)
    gflops: float | None  # achieved at that latency: 2 x MACs / latency
    fraction_of_peak: float | None  # of the machine's measured peak (latency.json "peak": a GEMM, same runtime)
    netscore: float | None  # from validation accuracy
    utility: float | None  # the sampler's objective (--objective; NetScore by default)
    constraint: float | None  # > 0: infeasible by that much
    feasible: bool
    within_caps: bool  # feasible but for the accuracy floor: may still win when nothing reaches the floor
    infeasible_reason: str | None
    retry_of: int | None
    reused_from: int | None  # the trial whose training this one reused (same fitted architecture)
    datetime_start: datetime | None
    duration_s: float | None


class SeedRun(TypedDict, total=False):
    """One trained run of a module (``evaluators.run.train_module``): a rung-2 candidate, a final
    seed or a baseline. Test fields come from ``evaluators.scoring.score_test``."""

    val_accuracy: float  # in ``metric``
    test_accuracy: float  # in ``metric``; the image verdict on patch datasets (DAGM), else per image
    metric: str  # accuracy | balanced_accuracy (imbalanced data: ``scoring.selection_metric``)
    test_metrics: dict[str, Any]
    test_image_metrics: dict[str, Any]  # patch datasets only
    test_patch_accuracy: float  # patch datasets only
    input_size: int
    epochs_run: int
    planned_epochs: int
    stop_reason: str  # epochs | plateau | time
    best_epoch: int
    train_seconds: float
    train_images_per_second: float
    precision: str
    teacher: str | None
    kd: str
    seed: int
    history: list[dict[str, Any]]  # per epoch: loss, val_accuracy, val_loss, lr, seconds
    netscore_definition: str
    macs: int  # baselines: counted on the built module
    params: int


class RungRecord(TypedDict):
    """A rung-2 candidate (``phases.promote``): its proxy numbers and its full-resolution run."""

    trial: int
    spec: Any  # ArchSpec (dropped from summary.json)
    proxy_val_accuracy: float
    proxy_netscore: float
    macs: int
    params: int
    val_accuracy: float
    test_accuracy: float
    epochs_run: int
    planned_epochs: int
    best_epoch: int
    stop_reason: str
    train_seconds: float
    train_images_per_second: float
    input_size: int
    val_netscore: float
    latency_ms: float | None  # ONNX Runtime batch 1, timed apart from training (else the search's screen)
    val_utility: float  # --objective of validation accuracy: what the winner rule ranks by
    history: list[dict[str, Any]]
    fidelity: str


class FinalRecord(TypedDict):
    """The winner's seeds in summary.json (``phases.final_record``): per seed, and mean +- std."""

    seeds: list[dict[str, Any]]
    val_accuracy_mean: float
    val_accuracy_std: float
    test_accuracy_mean: float
    test_accuracy_std: float


class WinnerRecord(TypedDict):
    """The exported winner in summary.json and winner/metrics.json (``winner.export_winner``)."""

    name: str
    trial: int
    metric: str  # what "accuracy" means in this record: accuracy | balanced_accuracy
    test_accuracy: float  # mean over seeds (the proxy trial's own when not retrained)
    test_accuracy_mean: float
    test_accuracy_std: float
    test_accuracies: list[float]
    val_accuracy_mean: float
    macs: int
    params: int
    netscore: float
    seeds: int
    epochs_run: list[int | None]
    fidelity: str  # what training the accuracy was obtained at, said in words
    latency_ms: float
    latency_onnx_ms: float
    throughput_img_s: float
    throughput_onnx_img_s: float
    cpu: str
    threads: int
    input_size: int
    confusion: list[list[int]] | None
    class_names: list[str]
    per_class_accuracy: dict[str, float]
    retrained: bool
    warning: str | None  # e.g. below the accuracy floor: exported anyway, said in the terminal, report and card
    final: FinalRecord
    netscore_definition: str
    objective: str
    operating_point: NotRequired[dict | None]  # test escape / false-reject rates at the stored threshold


class Timeline(TypedDict, total=False):
    """Seconds each phase took, the budget and the plan (``TimePlan.to_dict``); ``wall_s`` is the
    whole run, from the user's command to the written summary."""

    budget_s: float | None
    plan: dict[str, float | None]
    setup_s: float
    explore_s: float
    promote_s: float
    final_s: float
    baselines_s: float
    export_s: float
    wall_s: float


class RunSummary(TypedDict, total=False):
    """summary.json of a search run (``search.run_search``); ``report`` and ``--json`` read it."""

    run: str
    run_dir: str
    trial_counts: dict[str, int]
    netscore_definition: str
    objective: str  # what the search maximised (--objective), defined
    peak: dict[str, Any] | None  # the machine's measured peak GFLOP/s the designs are set against
    description: str
    winner: WinnerRecord | None
    promotion: list[dict[str, Any]]  # rung-2 records without spec and history, plus "chosen"
    comparison: list[dict[str, Any]]  # the report's table: winner rows and baselines, each with its fidelity
    notes: list[str]
    interrupted: bool
    workers_died: int  # search worker processes that died (and were restarted, up to procs.MAX_RESTARTS)
    incomplete: str | None  # why exploration ended early (its workers kept dying); the run then exits 1
    timeline: Timeline
