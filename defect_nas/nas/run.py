"""A whole search run: study, workers, live progress, then the full-resolution rung, the winner's
converged seeds, baselines, export and report, all inside the time budget (see ``nas.phases`` and ``nas.plan``).

``run_search`` drives local worker processes (one thread each) against the study, shows progress,
and when the trial count or the exploration deadline is reached (or on Ctrl-C) writes the run
folder: trials.csv, pareto.csv, learning_curves.csv, summary.json, report.html and winner/.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from safetensors.torch import load_file

from defect_nas.core.files import write_csv, write_json
from defect_nas.core.interrupts import deferred_stop, stopped_by
from defect_nas.core.netscore import DEFAULT as NETSCORE
from defect_nas.core.pareto import pareto_front
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.core.utility import describe_objective
from defect_nas.evaluators.runtime import Runtime
from defect_nas.measure.runinfo import environment
from defect_nas.nas.baselines import baseline_names
from defect_nas.nas.context import TEACHER_SHARE, SearchContext, load_context
from defect_nas.nas.latency import PEAK, TIME_SHARE, measure_designs, read_cache, with_latency
from defect_nas.nas.phases import (
    Watch,
    choose_winner,
    final_record,
    promote,
    promotion_candidates,
    train_baselines,
    train_final,
    write_curves,
)
from defect_nas.nas.plan import TimePlan
from defect_nas.nas.procs import WorkerJob, explore
from defect_nas.nas.recipe import (
    CHECK_TRIALS,
    NOTHING_LEARNED_ATTR,
    RECIPE_TEACHER_ATTR,
    Recipe,
    learned,
    nothing_learned_message,
    recipe_level,
)
from defect_nas.nas.records import RungRecord, RunSummary, SeedRun, Timeline, TrialRow
from defect_nas.nas.report import write_report
from defect_nas.nas.rows import trial_rows
from defect_nas.nas.storage import RunLock, fail_orphaned_trials, open_storage, redact, sqlite_url
from defect_nas.nas.winner import export_winner
from defect_nas.nas.workers import create_or_load_study, enqueue_prototypes, finished_count


def _incomplete(study: optuna.Study, config: SearchConfig, deadline: float | None) -> str:
    """Why exploration ended before its trial count or deadline (its workers died), or ''."""
    if study.user_attrs.get(NOTHING_LEARNED_ATTR):  # the workers stopped on purpose: no recipe learned
        return ""
    if config.trials is not None and finished_count(study) < config.trials:
        return f"{finished_count(study)} of {config.trials} trials finished"
    if config.trials is None and deadline is not None and time.time() < deadline - 5:
        return f"{deadline - time.time():.0f} s of exploration were left"
    return ""


def trial_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def run_search(
    config: SearchConfig, run_dir: Path, *, storage_url: str | None = None, study_name: str | None = None,
    workers: int = 1, threads: int = 1, progress: Callable[[optuna.Study, dict], None] | None = None,
    log: Callable[[str], None] = print, finalize: bool = True, started: float | None = None, device: str = "cpu",
) -> RunSummary:
    """Run (or resume) the search in ``run_dir`` and return the summary. ``started``: when the
    user's command began (the time budget counts from there, data loading and teacher included).
    ``device``: where workers train (``cuda``: round-robin over every GPU, ``workers`` trials in
    flight); latency is always measured on the CPU, the deployment target."""
    started = started or time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    study_name = study_name or run_dir.name
    url = storage_url or sqlite_url(run_dir)
    with RunLock(run_dir):
        runtime = Runtime(device=device, threads=threads)
        storage = open_storage(url)  # an unreachable or conflicting study fails before anything is written
        study = create_or_load_study(config, storage, study_name)
        trials_before = len(study.trials)  # this session's workers seed their samplers apart from earlier ones
        teacher_s = None if config.time_budget_s is None else TEACHER_SHARE * config.time_budget_s
        ctx = load_context(config, run_dir, log=log, runtime=runtime, teacher_time_s=teacher_s)
        write_json(RunFolder(run_dir).config, {**config.to_dict(), "storage": redact(url), "study": study_name,
                                             "device": runtime.device})
        write_json(RunFolder(run_dir).environment, {**environment(config.seed), "workers": workers, "threads": threads,
                                                  "device": runtime.device})
        write_json(RunFolder(run_dir).split, ctx.split.to_json(ctx.dataset))
        if storage_url is None:
            n = fail_orphaned_trials(study)
            if n:
                log(f"resuming: {n} trial(s) left running by a stopped process were failed and re-queued")
        queued = enqueue_prototypes(study, config, ctx.task)
        if queued:
            log(f"generative synthesis starts from {queued} prototype(s)")
        names = baseline_names(config.baselines, config.spaces, ctx.task)
        plan = TimePlan.make(config, started, time.time(), bool(names))
        deadline = plan.explore_end
        study.set_user_attr("stop", {"n_trials": config.trials, "deadline": deadline})
        study.set_user_attr("dataset_fingerprint", ctx.dataset.fingerprint)
        timeline: Timeline = {"setup_s": round(time.time() - started, 1)}
        interrupted, deaths = False, 0

        def tick() -> None:
            if progress is not None:
                progress(study, {"started": started, "deadline": deadline, "n_trials": config.trials, "end": plan.end,
                                 "objective": config.objective})

        try:
            if config.trials is None or finished_count(study) < config.trials:
                job = WorkerJob(config.to_dict(), str(run_dir), url, study_name, config.trials, deadline, threads,
                                runtime.device, trials_before)
                deaths = explore(study, job, workers, tick, log)
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted: stopping workers and writing results")
        if storage_url is None:  # every local worker is gone: a trial one was cut in before it named
            fail_orphaned_trials(study)  # its process (created, not yet tagged) is failed and re-queued too
        tick()  # the live table's last frame shows every trial's final state, not RUNNING
        incomplete = not interrupted and _incomplete(study, config, deadline)
        if incomplete:
            log(f"the search stopped early: {incomplete}")
        timeline["explore_s"] = round(time.time() - started - timeline["setup_s"], 1)
        def watch(phase: str, jobs: list[dict]) -> None:  # the phases after exploration, epoch by epoch
            if progress is not None:
                progress(study, {"started": started, "end": plan.end, "phase": phase, "jobs": jobs})

        summary = write_results(ctx, study, run_dir, finalize=finalize and not (interrupted or incomplete), log=log,
                                workers=workers, threads=threads, plan=plan, baselines=names, timeline=timeline,
                                watch=watch)
        with deferred_stop(lambda: None) as stopped:  # the summary is written whole, Ctrl-C or SIGTERM or not
            summary["interrupted"] = interrupted or bool(summary.get("interrupted"))
            summary["stopped_by"] = stopped_by() if summary["interrupted"] else None  # SIGINT or SIGTERM
            summary["workers_died"] = deaths
            summary["incomplete"] = incomplete or None
            timeline["wall_s"] = round(time.time() - started, 1)
            summary["timeline"] = {"budget_s": config.time_budget_s, "plan": plan.to_dict(), **timeline}
            write_json(RunFolder(run_dir).summary, summary)
        if stopped and not summary["interrupted"]:  # Ctrl-C during that write: said in the file too
            summary["interrupted"], summary["stopped_by"] = True, stopped_by()
            write_json(RunFolder(run_dir).summary, summary)
        return summary


@dataclass
class Outcome:
    """What the phases after exploration produced: the winner and its seeds, for export and report."""

    winner: int  # trial number
    runs: list[tuple[SeedRun, dict]]  # (seed summary, state dict) per trained seed of the winner
    promoted: list[RungRecord] = field(default_factory=list)
    baselines: list[dict] = field(default_factory=list)  # comparison rows
    retrained: bool = True  # False: the search trial's proxy weights (interrupted, or every seed failed)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C after the winner's seeds trained (baselines cut short)


def write_results(ctx: SearchContext, study: optuna.Study, run_dir: Path, *, finalize: bool, log, workers: int,
                  threads: int, plan: TimePlan, baselines: list[str], timeline: Timeline,
                  watch: Watch | None = None) -> RunSummary:
    """Tables, then (when ``finalize``) rung 2, the winner's seeds and baselines, then export and report."""
    cfg = ctx.config
    rows = write_tables(study, run_dir)
    summary = base_summary(cfg, study, run_dir, Recipe.for_data(cfg, ctx.dataset, recipe_level(study)))
    if ctx.teacher_note:
        summary["notes"].append(ctx.teacher_note)
    entrants = promotion_candidates(rows, cfg.top_k if finalize else 1, cfg.min_accuracy,
                                    with_prototype=finalize and cfg.fastest_in_band)
    if not entrants:
        log("no trial finished: nothing to export")
        write_report(RunFolder(run_dir).report, summary, rows)
        return summary
    ctx.recipe_level = recipe_level(study)
    summary["recipe"] = {**ctx.recipe.to_dict(), "tried": tried_recipes(ctx, study)}
    if ctx.recipe_level > 0:
        summary["notes"].append(f"the first {CHECK_TRIALS} trials of each earlier recipe sat at chance; the study "
                                f"moved on to {ctx.recipe.describe()} (tried: {'; '.join(summary['recipe']['tried'])})")
    if (teacher := study.user_attrs.get(RECIPE_TEACHER_ATTR)) is not None:  # the transfer rung was reached
        summary["recipe"]["teacher_run"] = teacher
        summary["notes"].append(
            f"transfer rung: an ImageNet {teacher['arch']} fine-tuned in the run scored {teacher['val_accuracy']:.2f}% "
            f"on validation in {teacher['seconds']:.0f} s; "
            + ("the students distilled from it" if teacher["used"]
               else "at chance, so the students trained without it"))
    if nothing_learned(study) and cfg.min_accuracy > 0:  # --min-accuracy 0: the best is exported whatever it scored
        return no_winner(ctx, study, summary, rows, run_dir, log)
    specs = {r["number"]: ArchSpec.from_json(study.trials[r["number"]].user_attrs["spec"]) for r in entrants}
    outcome = None
    if finalize:
        try:
            # nothing trains now: the compared designs' latency, once each
            until = None if plan.end is None else time.time() + TIME_SHARE * max(0.0, plan.end - time.time())
            timed = measure_designs(study, rows, entrants, run_dir, threads, log, until)
            rows, summary["peak"] = write_tables(study, run_dir, latency=timed), timed.get(PEAK)
            by_number = {r["number"]: r for r in rows}
            entrants = [by_number[r["number"]] for r in entrants]  # with their quiet latency, for the utility
            outcome = finish(ctx, entrants, specs, plan, workers, threads, baselines, timeline, log, watch)
        except KeyboardInterrupt:  # Ctrl-C in the final phase: the best search trial is exported, said so
            log("interrupted in the final phase: exporting the best search trial as it is")
            summary["interrupted"] = True
    if outcome is None or not outcome.runs:
        outcome = proxy_outcome(cfg, run_dir, entrants[0], outcome)
    final_val = final_record(outcome.runs)["val_accuracy_mean"]
    if not summary.get("interrupted") and not learned(final_val, ctx.dataset, ctx.split):
        if cfg.min_accuracy > 0:
            summary["notes"] += outcome.notes
            return no_winner(ctx, study, summary, rows, run_dir, log)
        outcome.notes.append("WARNING: the winner scores at chance on validation; exported because --min-accuracy "
                             "is 0")
    summary["notes"] += outcome.notes
    log(f"exporting the winner (trial {outcome.winner}) to {RunFolder(run_dir).winner}")
    t = time.time()
    with deferred_stop(lambda: log("interrupt received: finishing the export (seconds), then stopping; "
                                   "a second one (Ctrl-C, SIGTERM) stops now")) as stopped:
        exported = export_winner(ctx, study, run_dir, rows, specs[outcome.winner], outcome, threads=threads)
        summary["notes"] += exported.pop("notes", [])
        summary.update(exported)
        timeline["export_s"] = round(time.time() - t, 1)
        timeline["wall_s"] = round(time.time() - plan.started, 1)
        summary["timeline"] = {"budget_s": cfg.time_budget_s, "plan": plan.to_dict(), **timeline}
        write_report(RunFolder(run_dir).report, summary, rows)
    if stopped or outcome.interrupted:
        summary["interrupted"] = True
    return summary


def tried_recipes(ctx: SearchContext, study: optuna.Study) -> list[str]:
    """The recipes the study's trials trained with, rung by rung (nas.recipe.LADDER)."""
    levels = {t.user_attrs.get("recipe_level", 0) for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("val_accuracy") is not None}
    return [Recipe.for_data(ctx.config, ctx.dataset, level).describe() for level in sorted(levels)]


def nothing_learned(study: optuna.Study) -> bool:
    """The workers tried every recipe rung and each sat at chance (``recipe.check_recipe``): rung 2 and
    the final seeds would only train noise longer. Otherwise (the trial count or the time ended the
    ladder early) rung 2 and the final seeds train at full resolution, and the final guard judges."""
    return bool(study.user_attrs.get(NOTHING_LEARNED_ATTR))


def no_winner(ctx: SearchContext, study: optuna.Study, summary: RunSummary, rows: list[TrialRow], run_dir: Path,
              log) -> RunSummary:
    """End a run in which nothing learned: the diagnosis in the summary and report, no winner exported."""
    trained = sum(1 for r in rows if r["val_accuracy"] is not None)
    message = nothing_learned_message(ctx.dataset, ctx.split, tried_recipes(ctx, study), trained)
    summary["nothing_learned"] = message
    summary["notes"].append(f"NO WINNER: {message}")
    log(message)
    write_report(RunFolder(run_dir).report, summary, rows)
    return summary


def write_tables(study: optuna.Study, run_dir: Path, keep_curves: bool = False,
                 latency: dict | None = None) -> list[TrialRow]:
    """trials.csv and pareto.csv; the rows of every trial, with the quiet latency measurements
    (``latency``, else latency.json's). A new run's phases drop the learning curves of an earlier
    one (never plotted as this run's); ``report`` keeps them."""
    rows = with_latency(trial_rows(study), latency if latency is not None else read_cache(run_dir))
    if not keep_curves:
        RunFolder(run_dir).curves.unlink(missing_ok=True)
    write_csv(RunFolder(run_dir).trials_csv, rows)
    feasible = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["val_accuracy"] is not None]
    write_csv(RunFolder(run_dir).pareto_csv, pareto_front(feasible, minimize=("macs",)))
    return rows


def _px(size: int | None) -> str:
    return f"{size}px" if size else "full resolution"


def base_summary(cfg: SearchConfig, study: optuna.Study, run_dir: Path, recipe: Recipe) -> RunSummary:
    return {
        "run": run_dir.name, "run_dir": str(run_dir), "trial_counts": trial_counts(study),
        "netscore_definition": NETSCORE.describe(),
        "objective": describe_objective(cfg),
        "description": f"{cfg.strategy} over {', '.join(cfg.spaces)}; budget {cfg.budget_flops / 1e6:g}M MACs "
                       f"+-{cfg.tolerance * 100:g}%; rung 1: trials at {cfg.epochs} epochs / "
                       f"{_px(recipe.proxy_input_size)}; rung 2: top-{cfg.top_k} by proxy accuracy at "
                       f"{_px(cfg.final_input_size)}, up to {cfg.promote_epochs} epochs; final: the winner x "
                       f"{cfg.final_seeds} seeds up to {cfg.final_epochs} epochs (plateau patience {cfg.patience}, "
                       f"EMA {cfg.ema_epochs or 0:g} epochs); "
                       f"teacher {cfg.teacher}",
        "winner": None, "promotion": [], "notes": [],
    }


def finish(ctx: SearchContext, entrants: list[TrialRow], specs: dict[int, ArchSpec], plan: TimePlan, workers: int,
           threads: int, baselines: list[str], timeline: Timeline, log, watch: Watch | None = None) -> Outcome:
    """Rung 2 (when more than one entrant), the winner's choice, its seeds, then baselines."""
    cfg = ctx.config
    t = time.time()
    promoted = []
    if len(entrants) > 1:
        promoted = promote(ctx, [(r["number"], specs[r["number"]], r) for r in entrants], plan, workers, threads, log,
                           watch)
    timeline["promote_s"] = round(time.time() - t, 1)
    winner = entrants[0]["number"]
    if promoted:
        winner = choose_winner(promoted, cfg.accuracy_margin, cfg.min_accuracy, cfg.fastest_in_band,
                               val_images=len(ctx.split.val))["trial"]
    t = time.time()
    notes: list[str] = []
    runs = train_final(ctx, specs[winner], plan, workers, threads, log, watch, pace=rung2_pace(promoted, workers),
                       notes=notes)
    timeline["final_s"] = round(time.time() - t, 1)
    write_curves(RunFolder(ctx.run_dir).curves, promoted, runs, winner)
    outcome = Outcome(winner, runs, promoted, notes=notes)
    t = time.time()
    if baselines:
        try:
            outcome.baselines, skipped = train_baselines(ctx, baselines, plan, workers, threads, log, watch)
            outcome.notes += skipped
        except KeyboardInterrupt:  # the winner's converged seeds are kept and exported; only baselines are lost
            log("interrupted while training baselines: exporting the winner's trained seeds")
            outcome.interrupted = True
            outcome.notes.append("baselines not trained: interrupted")
    else:
        outcome.notes.append("baselines not trained: not asked for (--baselines resnet50,mobilenetv2-0.35,"
                             "prototypes trains them after the winner, at its final recipe)")
    timeline["baselines_s"] = round(time.time() - t, 1)
    return outcome


def rung2_pace(promoted: list[RungRecord], workers: int) -> float | None:
    """Images/s the machine trained at full resolution in rung 2, all its concurrent jobs together."""
    rates = [p["train_images_per_second"] for p in promoted if p.get("train_images_per_second")]
    return statistics.median_high(rates) * min(workers, len(promoted)) if rates else None


def proxy_outcome(cfg: SearchConfig, run_dir: Path, best: TrialRow, partial: Outcome | None) -> Outcome:
    """Interrupted, or every final seed failed: the best search trial's own (proxy) weights, said plainly."""
    s = {"seed": cfg.seed, "val_accuracy": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
         "input_size": best["fidelity_input_size"], "epochs_run": best["epochs_run"]}
    runs = [(s, load_file(RunFolder(run_dir).trial_weights(best['number'])))]
    note = ("interrupted, or every final seed failed: the winner is the best search trial at proxy fidelity, "
            "not retrained")
    kept = partial or Outcome(best["number"], [])
    return Outcome(best["number"], runs, kept.promoted, kept.baselines, retrained=False, notes=[*kept.notes, note])


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """The --json summary: run_dir, winner (accuracy, MACs, params, NetScore), trial counts."""
    w = summary.get("winner") or {}
    keep = ("name", "trial", "test_accuracy", "test_accuracy_std", "val_accuracy_mean", "macs", "params", "netscore",
            "latency_ms", "latency_onnx_ms", "seeds", "retrained")
    return {"run_dir": summary["run_dir"], "winner": {k: w.get(k) for k in keep} if w else None,
            "trial_counts": summary["trial_counts"], "interrupted": summary.get("interrupted", False),
            "workers_died": summary.get("workers_died", 0), "incomplete": summary.get("incomplete")}
