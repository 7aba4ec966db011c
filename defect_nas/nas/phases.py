"""After exploration: the full-resolution rung, the winner's converged seeds, and baselines, in time.

Why: the proxy (100 px, 12 epochs) ranks candidates well, but converged accuracy needs far more
training (the first reference winner: 95.6% at 15 epochs at 200 px, 99.7% at 60, 100% at 150).
So the best proxy candidates climb to a rung at full resolution (one seed, a schedule sized to
the rung's time share), the winner is chosen there, and its seeds train until validation
plateaus or the budget ends. Every schedule is sized from the epoch times the job itself
measures (``TrainConfig.time_budget_s``), so a slow architecture or a busy machine shortens the
schedule instead of overrunning the budget.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import write_csv, write_json
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.spec import ArchSpec
from defect_nas.core.utility import utility
from defect_nas.nas import procs
from defect_nas.nas.context import SearchContext, ensure_recipe_teacher, train_candidate, train_config
from defect_nas.nas.plan import MIN_FINAL_EPOCHS, TimePlan, reserve_seconds, seeds_that_fit
from defect_nas.nas.records import FinalRecord, RungRecord, SeedRun, TrialRow
from defect_nas.nas.rows import best_trials, mean_std

Log = Callable[[str], None]


Watch = Callable[[str, list[dict]], None]  # (phase, each job's last epoch): the live view of a phase


JOB_MARGIN_S = 2.0  # a job's own share of the end: test evaluation and handing back the weights


MIN_SLOT_S = 120.0  # rung 2 promotes fewer candidates rather than give each less than this


@dataclass(frozen=True)
class TrainJob:
    """One training in a pool process: a spec (or a named ``baseline``) at ``input_size``, stopping by
    ``deadline`` and after ``slot`` seconds from its own start (its schedule sized to that time).
    Without time left it is skipped (TimeoutError), or, if not ``skippable`` (the winner's seeds),
    trains one epoch. With a ``tag``, each epoch is written to RUN/progress/<tag>.json for the
    terminal's live view."""

    spec_json: str | None
    baseline: str | None
    epochs: int
    input_size: int | None
    seed: int
    deadline: float | None
    patience: int | None
    skippable: bool = True
    slot: float | None = None
    average: bool = True  # the weights' moving average (final seeds, baselines), not rung 2's raw weights
    tag: str | None = None
    recipe_level: int = 0


def _train_job(job: TrainJob) -> tuple[dict, dict]:
    """Run a ``TrainJob`` in this pool process: (training summary, state dict)."""
    from defect_nas.evaluators.run import train_module

    ctx = procs.context()
    spec_json, baseline, epochs, input_size, seed = job.spec_json, job.baseline, job.epochs, job.input_size, job.seed
    deadline, patience, slot, tag = job.deadline, job.patience, job.slot, job.tag
    recipe_level, skippable, average = job.recipe_level, job.skippable, job.average
    ctx.recipe_level = recipe_level  # the study's recipe rung (nas.recipe): imbalance handling, learning rate,
    ensure_recipe_teacher(ctx)  # and at the transfer rung the teacher the workers fine-tuned (from the cache)
    if slot is not None:  # equal time for every rung-2 candidate, whenever its turn comes
        deadline = min(deadline, time.time() + slot) if deadline is not None else time.time() + slot
    budget = None if deadline is None else deadline - time.time() - JOB_MARGIN_S
    if budget is not None and budget < 1:
        if skippable:
            raise TimeoutError("no time left in the budget")
        budget = 1e-3  # the first epoch always runs: a winner is never left untrained
    # the weights' moving average where it was measured to help: long schedules (final seeds, and baselines
    # at their recipe); rung 2's 28-40-epoch slots keep the raw weights (28 epochs, seed 0: 98.89% raw,
    # 97.50% averaged; results/benchmarks/kd_converged.*)
    overrides = {"patience": patience, "time_budget_s": budget,
                 "ema_epochs": ctx.config.ema_epochs if average else None}
    on_epoch = None if tag is None else _progress_file(progress_path(ctx.run_dir, tag), tag)
    if spec_json is not None:
        model, summary = train_candidate(ctx, ArchSpec.from_json(spec_json), epochs, input_size, seed, on_epoch,
                                         **overrides)
    else:
        from defect_nas.nas.baselines import baseline_costs, baseline_model

        ds = ctx.dataset
        torch.manual_seed(seed)
        model = baseline_model(baseline, ds.images.shape[1], len(ds.class_names), ctx.task)
        cfg = replace(train_config(ctx, epochs, input_size, seed), **overrides)
        summary = train_module(model, ds, ctx.split, cfg, ctx.teacher, on_epoch, runtime=ctx.runtime)
        summary.update(baseline_costs(model, ds.images.shape[1], ds.images.shape[-1]))
    return summary, {k: v.contiguous() for k, v in model.state_dict().items()}


PROGRESS = "progress"  # RUN/progress/<job>.json: each pool job's last epoch, while a phase runs


def progress_path(run_dir: Path, tag: str) -> Path:
    """RUN/progress/<tag>.json, the tag made a file name (a prototype baseline is "residual/resnet-proto")."""
    return run_dir / PROGRESS / (tag.replace("/", "_").replace(" ", "_") + ".json")


def _progress_file(path: Path, tag: str) -> Callable[[int, float, dict], None]:
    def on_epoch(epoch: int, score: float, record: dict) -> None:
        try:
            write_json(path, {"job": tag, "epoch": epoch, "planned": record.get("planned"), "val": score,
                              "seconds": record["seconds"]})
        except (OSError, DefectNasError):  # the live view is not worth a finalist's training
            pass

    return on_epoch


def wait_watched(futures: list[Future], tags: list[str], run_dir: Path, phase: str, watch: Watch | None) -> None:
    """Wait for a phase's jobs (``tags``), showing their epochs to ``watch`` every 2 s (the live view)."""
    pending = set(futures)
    try:
        while pending:
            _, pending = wait(pending, timeout=2)
            if watch is None:
                continue
            jobs = []
            for tag in tags:
                try:
                    jobs.append(json.loads(progress_path(run_dir, tag).read_text()))
                except (OSError, ValueError):  # no epoch yet (files are written atomically)
                    continue
            watch(phase, jobs)
    finally:
        shutil.rmtree(run_dir / PROGRESS, ignore_errors=True)


def clear_progress(run_dir: Path) -> None:
    """A phase starts without another's (or a killed run's) job files."""
    shutil.rmtree(run_dir / PROGRESS, ignore_errors=True)


def _fidelity(s: dict) -> str:
    return (
        f"{s['epochs_run']} epochs at {s['input_size']}px (planned {s['planned_epochs']}, stopped: {s['stop_reason']})"
    )


def promotion_candidates(rows: list[TrialRow], k: int, min_accuracy: float,
                         with_prototype: bool = False) -> list[TrialRow]:
    """Rung 2's entrants: the k distinct feasible architectures with the best proxy validation
    accuracy (ties to NetScore). Accuracy first: proxy accuracy ranks converged accuracy well
    (Spearman 0.72 on 17 residual and LW specs, parameter count 0.33: results/benchmarks/fidelity.*), where
    NetScore would send the smallest nets to the top. ``with_prototype`` (--target-accuracy): the
    budget's fitted prototype enters second whatever its proxy score: at 10M MACs the 100 px proxies
    sat within noise (91-94%), the prototype ranked 7th, yet it converges to 99.54% and is the
    fastest design timed there (results/benchmarks/fast_10m/, band_speed.*)."""
    best = best_trials(rows, k, min_accuracy, by="accuracy")
    if not with_prototype or not best:
        return best
    proto = next((r for r in best_trials(rows, len(rows), 0.0) if r.get("prototype")), None)
    if proto is None or proto["spec_digest"] in {r["spec_digest"] for r in best}:
        return best
    return [best[0], proto, *best[1:]][: max(k, 2)]


def promote(ctx: SearchContext, entrants: list[tuple[int, ArchSpec, dict]], plan: TimePlan, workers: int,
            threads: int, log: Log, watch: Watch | None = None) -> list[RungRecord]:
    """Train each entrant at full resolution, one seed, ``workers`` at a time in equal time slots."""
    cfg = ctx.config
    start = time.time()
    left = None if plan.promote_end is None else max(0.0, plan.promote_end - start)
    if left is not None and len(entrants) > workers and left / math.ceil(len(entrants) / workers) < MIN_SLOT_S:
        entrants = entrants[:workers]  # a short budget: fewer candidates, each trained long enough to tell
    rounds = math.ceil(len(entrants) / max(1, workers))
    slot = None if left is None else left / rounds
    if len(entrants) < 2 or (slot is not None and slot < 2 * JOB_MARGIN_S):
        log("rung 2 skipped: fewer than two candidates or no time for it")
        return []
    log(f"rung 2: {len(entrants)} candidate(s) at full resolution, "
        + (f"{slot / 60:.1f} min each" if slot else f"{cfg.promote_epochs} epochs each"))
    out = []
    clear_progress(ctx.run_dir)
    with procs.run_pool(cfg.to_dict(), ctx.run_dir, min(workers, len(entrants)), threads, ctx.runtime.device) as pool:
        futures = [pool.submit(_train_job, TrainJob(spec.to_json(indent=None), None, cfg.promote_epochs,
                                                    cfg.final_input_size, cfg.seed, plan.promote_end, patience=None,
                                                    slot=slot, average=False, tag=f"trial {number}",
                                                    recipe_level=ctx.recipe_level))
                   for number, spec, _ in entrants]
        wait_watched(futures, [f"trial {number}" for number, _, _ in entrants], ctx.run_dir, "rung 2", watch)
        for (number, spec, row), fut in zip(entrants, futures):
            entry = {"trial": number, "spec": spec, "proxy_val_accuracy": row["val_accuracy"],
                     "proxy_netscore": row["netscore"], "macs": row["macs"], "params": row["params"],
                     "latency_ms": row.get("latency_ms") or row.get("latency_search_ms")}
            try:
                s, _ = fut.result()
            except Exception as e:  # no time left, or the process died: that candidate only
                log(f"rung 2: trial {number} skipped: {e.__class__.__name__}: {str(e)[:120]}")
                continue
            entry.update(_rung_record(s, row["params"], row["macs"]))
            try:
                entry["val_utility"] = utility(cfg.objective, s["val_accuracy"], row["params"], row["macs"],
                                               entry["latency_ms"], cfg.latency_target_ms)
            except DefectNasError as e:  # no latency for it: ranked by NetScore, said so
                log(f"rung 2: trial {number} ranked by NetScore: {e}")
                entry["val_utility"] = entry["val_netscore"]
            out.append(entry)
    return out


def _rung_record(s: dict, params: int, macs: int) -> dict:
    return {"val_accuracy": s["val_accuracy"], "test_accuracy": s["test_accuracy"], "epochs_run": s["epochs_run"],
            "planned_epochs": s["planned_epochs"], "best_epoch": s["best_epoch"], "stop_reason": s["stop_reason"],
            "train_seconds": s["train_seconds"], "train_images_per_second": s["train_images_per_second"],
            "input_size": s["input_size"], "val_netscore": measured_netscore(s["val_accuracy"], params, macs),
            "history": s["history"], "fidelity": _fidelity(s)}


def choose_winner(promoted: list[RungRecord], margin: float, min_accuracy: float = 0.0,
                  fastest: bool = False, val_images: int | None = None) -> RungRecord:
    """The best validation utility (``--objective``: NetScore by default) among rung-2 candidates within
    ``margin`` points of the best rung-2 validation accuracy and above ``min_accuracy`` when any is
    (test is never looked at); with ``fastest``, the lowest measured latency among them (untimed last).
    With ``fastest`` and ``val_images``, a candidate whose gap to the best is within two standard errors
    of the difference of two accuracies on that many images also counts: rung 2 is one short seed
    (NEU, 10M MACs: 98.33 vs 96.67% after 29 epochs, 4 of 240 images, a gap inside 2 SE = 2.9 points),
    and the final seeds then show whether the faster net reaches the target."""
    best = max(p["val_accuracy"] for p in promoted)

    def close(p: RungRecord) -> bool:
        gap = best - p["val_accuracy"]
        return gap <= margin or (fastest and val_images is not None and gap <= two_se(best, p["val_accuracy"],
                                                                                        val_images))

    eligible = [p for p in promoted if close(p)]
    eligible = [p for p in eligible if p["val_accuracy"] >= min_accuracy] or eligible
    if fastest:
        return min(eligible, key=lambda p: (p.get("latency_ms") or math.inf, -p["val_accuracy"], p["trial"]))
    return max(eligible, key=lambda p: (p.get("val_utility", p["val_netscore"]), -p["trial"]))


def two_se(a: float, b: float, n: int) -> float:
    """Two standard errors (percentage points) of the difference of two accuracies ``a`` and ``b``
    (percent), each measured on the same ``n`` images (binomial, treated as independent: conservative)."""
    pa, pb = a / 100, b / 100
    return 200 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / max(1, n))


def train_final(ctx: SearchContext, spec: ArchSpec, plan: TimePlan, workers: int, threads: int,
                log: Log, watch: Watch | None = None, pace: float | None = None,
                notes: list[str] | None = None) -> list[tuple[dict, dict]]:
    """The winner's seeds, all at once, each until its validation plateaus, its epoch cap, or the
    plan's end; returns (summary with learning curve, weights) per seed. ``pace``: images/s the
    machine trained at the final size in rung 2; when the time left cannot give every seed
    MIN_FINAL_EPOCHS, fewer seeds train (each longer), and ``notes`` says so and names the budget
    that all of them would have needed."""
    cfg = ctx.config
    left_s = None if plan.final_end is None else max(0.0, plan.final_end - time.time())
    n, epochs = seeds_that_fit(cfg.final_seeds, pace, len(ctx.split.train), left_s)
    if n < cfg.final_seeds or epochs < MIN_FINAL_EPOCHS:
        need = cfg.final_seeds * MIN_FINAL_EPOCHS * len(ctx.split.train) / pace - left_s  # type: ignore[operator]
        note = (f"final: {left_s / 60:.1f} min left trains {n} seed(s) of {cfg.final_seeds} (~{epochs:.0f} epochs "
                f"each at {cfg.final_input_size or ctx.task.input_size} px); {cfg.final_seeds} seeds of "
                f"{MIN_FINAL_EPOCHS} epochs need about {need / 60:.0f} min more: give --time-budget "
                f"{math.ceil(((cfg.time_budget_s or 0) + need) / 60)}m")
        log(note)
        if notes is not None:
            notes.append(note)
    per = max(1, (workers * threads) // n)
    left = "" if plan.final_end is None else f", {max(0.0, plan.final_end - time.time()) / 60:.1f} min"
    log(f"final: {n} seed(s) at full resolution, up to {cfg.final_epochs} epochs{left}")
    clear_progress(ctx.run_dir)
    with procs.run_pool(cfg.to_dict(), ctx.run_dir, n, per, ctx.runtime.device) as pool:
        futures = [pool.submit(_train_job, TrainJob(spec.to_json(indent=None), None, cfg.final_epochs,
                                                    cfg.final_input_size, cfg.seed + s, plan.final_end, cfg.patience,
                                                    skippable=False, tag=f"seed {cfg.seed + s}",
                                                    recipe_level=ctx.recipe_level))
                   for s in range(n)]
        wait_watched(futures, [f"seed {cfg.seed + s}" for s in range(n)], ctx.run_dir, "final", watch)
        runs = []
        for s, f in enumerate(futures):
            try:
                runs.append(f.result())
            except Exception as e:  # a seed whose process died is reported, the others are kept
                log(f"final: seed {cfg.seed + s} failed: {e.__class__.__name__}: {str(e)[:120]}")
        return runs


def train_baselines(ctx: SearchContext, names: list[str], plan: TimePlan, workers: int, threads: int,
                    log: Log, watch: Watch | None = None) -> tuple[list[dict], list[str]]:
    """Baselines at the winner's final recipe (full resolution, same epoch cap and plateau rule,
    one seed) in the time left; a baseline that cannot run is skipped with the reason."""
    cfg = ctx.config
    end = None if plan.end is None else plan.end - reserve_seconds(cfg.time_budget_s or 0)
    if end is not None and end - time.time() < 30:
        return [], [f"baselines skipped: {max(0.0, end - time.time()):.0f} s left in --time-budget"]
    rows, skipped = [], []
    log(f"training baselines at the winner's final recipe: {', '.join(names)}")
    clear_progress(ctx.run_dir)
    with procs.run_pool(cfg.to_dict(), ctx.run_dir, min(workers, len(names)), threads, ctx.runtime.device) as pool:
        futures: dict[str, Future] = {b: pool.submit(_train_job, TrainJob(None, b, cfg.final_epochs,
                                                                           cfg.final_input_size, cfg.seed, end,
                                                                           cfg.patience, tag=b,
                                                                           recipe_level=ctx.recipe_level))
                                      for b in names}
        wait_watched(list(futures.values()), names, ctx.run_dir, "baselines", watch)
        for b, fut in futures.items():
            try:
                s, _ = fut.result()
            except Exception as e:  # a baseline that cannot run here must not sink the search's results
                skipped.append(f"baseline {b} skipped: {e.__class__.__name__}: {str(e).splitlines()[0][:120]}")
                log(skipped[-1])
                continue
            rows.append({"name": b, "test_accuracy": s["test_accuracy"], "val_accuracy": s["val_accuracy"],
                         "macs": s["macs"], "params": s["params"],
                         "netscore": measured_netscore(s["test_accuracy"], s["params"], s["macs"]),
                         "latency_ms": None, "fidelity": _fidelity(s) + ", 1 seed"})
    return rows, skipped


def final_record(runs: list[tuple[SeedRun, dict]]) -> FinalRecord:
    """What the summary says of the winner's seeds: per seed, and mean +- std."""
    seeds = [{k: s.get(k) for k in ("seed", "val_accuracy", "test_accuracy", "epochs_run", "planned_epochs",
                                "best_epoch", "stop_reason", "train_seconds", "train_images_per_second")}
             for s, _ in runs]
    val_m, val_s = mean_std([s["val_accuracy"] for s in seeds])
    test_m, test_s = mean_std([s["test_accuracy"] for s in seeds])
    return {"seeds": seeds, "val_accuracy_mean": val_m, "val_accuracy_std": val_s, "test_accuracy_mean": test_m,
            "test_accuracy_std": test_s}


def write_curves(path: Path, promoted: list[RungRecord], runs: list[tuple[SeedRun, dict]], winner_trial: int) -> None:
    """learning_curves.csv: every epoch of rung 2 and of the final seeds."""
    rows = []
    for p in promoted:
        rows += [{"phase": "rung2", "trial": p["trial"], "seed": None, **h} for h in p["history"]]
    for s, _ in runs:
        rows += [{"phase": "final", "trial": winner_trial, "seed": s["seed"], **h} for h in s["history"]]
    if rows:
        write_csv(path, rows)
