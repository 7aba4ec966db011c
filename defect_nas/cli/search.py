"""Search commands: ``search``, ``worker`` (``report`` is in cli/report.py)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from rich.live import Live

from defect_nas.cli.evaluate import DATASET_HELP, add_device_arg, add_teacher_args, warn_about
from defect_nas.cli.numbers import finite_float, int_in, number, positive_float, positive_int, threads_int
from defect_nas.cli.output import console, print_json, progress_log
from defect_nas.cli.progress import print_summary, progress_table
from defect_nas.core.budget import CHANNEL_MULTIPLE
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder
from defect_nas.core.interrupts import stop_status, stopped_by
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import (
    BOUNDS,
    HEAD_POOL_CHOICES,
    IMBALANCE_CHOICES,
    TARGET_SHARES,
    SearchConfig,
    flag,
)
from defect_nas.core.utility import OBJECTIVES
from defect_nas.evaluators.runtime import Runtime
from defect_nas.nas.baselines import baseline_choices
from defect_nas.nas.strategies import PRUNERS, STRATEGIES


def duration(text: str) -> float:
    """'60m', '1h', '90s', '3600' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 60m, 1h, 90s)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def field_type(name: str):
    """The ``type=`` of a SearchConfig field's flag: the range ``--config`` values are held to."""
    return number(BOUNDS[name])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search architectures under the budget (resumes an existing run)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="a run's config.json: its settings, with any flag typed here overriding them")
    p.add_argument(
        "--budget-flops", type=positive_float, default=100e6, help="target MACs (fvcore FLOPs), default 100e6"
    )
    p.add_argument("--tolerance", type=field_type("tolerance"), default=0.05)
    p.add_argument("--dataset", default="neu", help=DATASET_HELP)
    p.add_argument("--task", choices=["classify", "segment"],
                   help="segment: per-pixel masks, a decoder on each backbone, scored by mIoU; default: what the "
                        "data is (images/ + masks/, or x_mask.png beside x, is segmentation data)")
    p.add_argument("--space", default="residual", help="one or more spaces, comma-separated (residual,lw,vgg-student)")
    p.add_argument("--strategy", choices=STRATEGIES.names(), default="tpe")
    p.add_argument("--nsga2-cost", choices=["macs", "latency"], default="macs")
    p.add_argument("--objective", choices=OBJECTIVES.names(), default="netscore",
                   help="what tpe/random maximise and rung 2 ranks by: netscore (accuracy, params, MACs), "
                   "netscore-latency (MACs replaced by measured ONNX Runtime latency) or mnas "
                   "(accuracy x (latency / --latency-target-ms)^-0.07)")
    p.add_argument("--latency-target-ms", type=field_type("latency_target_ms"), help="mnas's target batch-1 latency")
    p.add_argument("--channel-multiple", type=field_type("channel_multiple"), default=CHANNEL_MULTIPLE,
                   help="budget fit prefers widths in multiples of this: 8 ran 25%% faster in ONNX Runtime at "
                   "equal MACs (median of 16 specs, results/benchmarks/channel_multiple.*); accuracy not measured")
    p.add_argument("--min-accuracy", type=field_type("min_accuracy"), default=95.0,
                   help="validation accuracy floor in percent (default 95): below it a candidate cannot win; "
                        "0 also exports a winner at chance (otherwise: no winner, exit 3)")
    p.add_argument("--target-accuracy", type=finite_float(0, 100, above=True),
                   help="percent (balanced on imbalanced data): search a ladder of budgets from --budget-flops "
                        "down (x0.3, x0.1, x0.03) and export the cheapest converged network whose validation "
                        "mean reaches it (front.csv); none does: the most accurate, with a warning")
    p.add_argument("--max-params", type=field_type("max_params"))
    p.add_argument("--max-latency-ms", type=field_type("max_latency_ms"),
                   help="batch-1 latency cap, measured on this machine")
    p.add_argument("--trials", type=field_type("trials"), help="stop after this many finished trials")
    p.add_argument("--time-budget", type=duration,
                   help="the whole run's wall time, e.g. 60m: data, teacher, search, final training, export")
    p.add_argument("--explore-share", type=field_type("explore_share"),
                   help="share of the budget for the proxy search (default 0.4; 0.25 with --target-accuracy)")
    p.add_argument("--promote-share", type=field_type("promote_share"),
                   help="share for the full-resolution rung (default 0.15; 0.1 with --target-accuracy)")
    p.add_argument("--epochs", type=field_type("epochs"), default=12,
                   help="epochs of a search trial (pruned earlier when weak)")
    p.add_argument("--proxy-input-size", type=int_in(0, int(BOUNDS["proxy_input_size"].high or 0)), default=None,
                   help="input size of search trials (default or 0: chosen from the data, 100 px on NEU)")
    p.add_argument("--imbalance", choices=IMBALANCE_CHOICES, default="auto",
                   help="imbalanced classes: auto (class-balanced batches when the largest class has 1.5x the "
                        "smallest), none, sampler, weights (weighted loss), logit (logit-adjusted loss)")
    p.add_argument("--head-pool", choices=HEAD_POOL_CHOICES, default="gap",
                   help="a classifier head's global pooling: gap (average, the default) or gmp (max: measured on "
                        "line data, not better end to end; docs/line-data.md)")
    p.add_argument("--pruner", choices=PRUNERS.names(), default="hyperband")
    p.add_argument("--min-epochs", type=field_type("min_epochs"), default=3)
    p.add_argument("--top-k", type=field_type("top_k"), default=4,
                   help="candidates promoted to the full-resolution rung")
    p.add_argument("--promote-epochs", type=field_type("promote_epochs"), default=40,
                   help="epoch cap of the full-resolution rung")
    p.add_argument("--accuracy-margin", type=field_type("accuracy_margin"), default=1.0,
                   help="the winner: best NetScore among rung-2 candidates within this many points of the best")
    p.add_argument("--final-seeds", type=field_type("final_seeds"), default=3)
    p.add_argument("--final-epochs", type=field_type("final_epochs"), default=150, help="epoch cap of each final seed")
    p.add_argument(
        "--patience",
        type=field_type("patience"),
        default=25,
        help="a final seed whose validation has not improved for this many epochs (counted in its "
        "schedule's second half) ends with a short anneal",
    )
    p.add_argument("--final-input-size", type=field_type("final_input_size"), help="default: the data's size")
    p.add_argument("--ema-epochs", type=finite_float(0), default=5.0,
                   help="the final seeds and baselines keep, in their schedule's second half, a moving average "
                   "of the weights over at most this many epochs (0: the raw weights)")
    add_teacher_args(p, default="none", cache=False,
                     help="distil from this teacher (default none: see README, 'Distillation')")
    p.add_argument("--kd", choices=["kl", "l2"], default="kl")
    p.add_argument("--baselines", default="none",
                   help=f"comma-separated: {', '.join(baseline_choices())} (default none); trained after "
                        "the winner at its final recipe, in the last 30%% of the time after rung 2")
    p.add_argument("--seed", type=field_type("seed"), default=0)
    p.add_argument("--split-seed", type=field_type("split_seed"), default=0)
    p.add_argument("--workers", type=positive_int, default=2,
                   help="local worker processes, one thread each (at most one per CPU core: more are capped, said)")
    p.add_argument("--threads", type=threads_int, default=1, help="torch threads per worker")
    add_device_arg(p, what="train (cuda: workers share each GPU, --workers trials in flight)")
    p.add_argument("--storage", help="postgresql://user@host/db to share the study with remote workers")
    p.add_argument("--run", help="run folder name (default: <dataset>-<budget>m, e.g. neu-100m)")
    p.add_argument("--results", default="results")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search, parser=p)

    p = sub.add_parser("worker", help="join a shared study as one more worker")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--threads", type=threads_int, default=1)
    add_device_arg(p)
    p.add_argument("--results", default="results")
    p.set_defaults(func=cmd_worker)

    from defect_nas.cli.report import add_report_parser

    add_report_parser(sub)


def typed_flags(args: argparse.Namespace) -> set[str]:
    """The argparse dests of the options the user typed."""
    typed = {a.split("=")[0] for a in getattr(args, "argv", []) if a.startswith("--")}
    parser = getattr(args, "parser", None)
    return {a.dest for a in (parser._actions if parser else []) if typed & set(a.option_strings)}


def with_config_file(config: SearchConfig, args: argparse.Namespace) -> SearchConfig:
    """``--config FILE``: the file's settings, overridden by every flag typed on this command line."""
    from dataclasses import fields, replace

    from defect_nas.core.search_config import RUN_KEYS

    try:
        stored = json.loads(Path(args.config).read_text())
    except FileNotFoundError:
        raise DefectNasError(f"--config {args.config}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DefectNasError(f"--config {args.config}: not a JSON config ({e.__class__.__name__})") from None
    if not isinstance(stored, dict):
        raise DefectNasError(f"--config {args.config}: not a search config (a JSON object, as config.json)")
    try:  # a value of the wrong kind or range: the flag's own message, naming the file
        base = SearchConfig.from_dict({k: v for k, v in stored.items() if k not in RUN_KEYS})
    except DefectNasError as e:
        raise DefectNasError(f"--config {args.config}: {e}") from None
    typed = typed_flags(args)
    return replace(base, **{f.name: getattr(config, f.name) for f in fields(SearchConfig)
                            if flag(f.name)[2:].replace("-", "_") in typed})


def _share(typed: float | None, which: int, args: argparse.Namespace) -> float:
    """A phase share as typed, else the default of the mode (TARGET_SHARES with --target-accuracy)."""
    plain = (SearchConfig.explore_share, SearchConfig.promote_share)[which]
    return typed if typed is not None else TARGET_SHARES[which] if args.target_accuracy is not None else plain


def min_epochs_of(args: argparse.Namespace) -> int:
    """``--min-epochs`` as typed (SearchConfig rejects one above ``--epochs``, one line); its default
    follows a short ``--epochs`` down, so ``--epochs 2`` alone is valid."""
    if "min_epochs" in typed_flags(args):
        return args.min_epochs
    return min(args.min_epochs, args.epochs)


def config_from(args: argparse.Namespace) -> SearchConfig:
    spaces = tuple(s.strip() for s in args.space.split(",") if s.strip())
    # absolute, so that a worker started elsewhere (or a resumed run) finds the same file
    weights = str(Path(args.teacher_weights).expanduser().resolve()) if args.teacher_weights else None
    from defect_nas.cli.segment import wants_segmentation

    config = SearchConfig(
        dataset=args.dataset, task="segment" if wants_segmentation(args) else "classify",
        spaces=spaces, budget_flops=args.budget_flops, tolerance=args.tolerance,
        max_params=args.max_params, max_latency_ms=args.max_latency_ms, strategy=args.strategy,
        nsga2_cost=args.nsga2_cost, objective=args.objective, latency_target_ms=args.latency_target_ms,
        channel_multiple=args.channel_multiple,
        min_accuracy=args.min_accuracy, trials=args.trials,
        time_budget_s=args.time_budget, epochs=args.epochs, proxy_input_size=args.proxy_input_size or None,
        imbalance=args.imbalance, head_pool=args.head_pool, pruner=args.pruner, min_epochs=min_epochs_of(args),
        top_k=args.top_k,
        explore_share=_share(args.explore_share, 0, args), promote_share=_share(args.promote_share, 1, args),
        promote_epochs=args.promote_epochs,
        accuracy_margin=args.accuracy_margin, patience=args.patience, ema_epochs=args.ema_epochs or None,
        final_seeds=args.final_seeds, final_epochs=args.final_epochs, final_input_size=args.final_input_size,
        teacher=args.teacher, teacher_init=args.teacher_init, teacher_epochs=args.teacher_epochs,
        teacher_input_size=args.teacher_input_size, teacher_weights=weights,
        teacher_freeze=args.teacher_freeze, kd=args.kd,
        baselines=tuple(b.strip() for b in args.baselines.split(",") if b.strip()), seed=args.seed,
        split_seed=args.split_seed,
    )
    if args.config:
        config = with_config_file(config, args)
    if config.trials is None and config.time_budget_s is None:
        raise DefectNasError("give --trials N or --time-budget 60m (or both) so the search knows when to stop")
    from defect_nas.nas.context import check_choices

    check_choices(config)  # an unknown space, teacher or baseline: one line, before anything is written
    return config


def check_outside_dataset(run_dir: Path, dataset: str) -> None:
    """A run folder inside the dataset folder would become part of the data: its ``trials/`` folder
    reads as a class without images, and every later phase's workers fail to load the data
    (a benchmark once lost its final phase to this)."""
    from defect_nas.data import dataset_folder

    data = dataset_folder(dataset)
    if run_dir.resolve().is_relative_to(data):
        raise DefectNasError(f"--results: the run folder {run_dir} lies inside the dataset folder {data}; its files "
                             "would become part of the data: choose a --results folder outside it")


def check_budget_feasible(config: SearchConfig):
    """A budget no space can meet fails before any teacher is trained or folder written; returns
    ``feasible(macs)``, the same check for other budgets (``--target-accuracy``'s ladder)."""
    from defect_nas.core.budget import Budget, fit
    from defect_nas.core.errors import Infeasible
    from defect_nas.data import load_dataset
    from defect_nas.search_spaces.base import RandomTrial, Task, get_space

    ds = load_dataset(config.dataset)  # also: an unknown dataset fails here, before anything is written
    warn_about(ds)
    task = Task(ds.images.shape[1], ds.images.shape[-1], len(ds.class_names))

    def why_not(macs: float) -> str | None:
        budget = Budget(macs, config.tolerance, config.max_params, config.channel_multiple)
        reason = ""
        for s in config.spaces:
            space = get_space(s)
            for seed in range(10):
                try:
                    fit(space.propose(RandomTrial(seed), task), budget)
                    return None
                except Infeasible as e:
                    reason = str(e)
        return reason

    reason = why_not(config.budget_flops)
    if reason is not None:
        raise DefectNasError(f"no architecture of {', '.join(config.spaces)} meets {config.budget_flops:g} MACs: "
                             f"{reason}")
    return lambda macs: why_not(macs) is None


def run_folder(args: argparse.Namespace, config: SearchConfig) -> Path:
    """``--results``/``--run``; else, when ``--config`` is the config.json of a run folder (its study.db
    beside it), that folder, so that the run resumes: it used to start a new run under the default name."""
    given = Path(args.config) if args.config else None
    if given and given.name == "config.json" and (given.parent / "study.db").is_file() \
            and not typed_flags(args) & {"results", "run"}:
        return given.parent
    return Path(args.results) / (args.run or config.default_run_name)


def capped_workers(asked: int) -> int:
    """At most one worker process per CPU core this process may use: more only slow each other down
    (each trains with its own threads) and multiply the memory; the cap is said on stderr."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if asked > cores:
        print(f"defect-nas: warning: --workers {asked} capped at {cores}, the CPU cores this machine gives "
              "the search", file=sys.stderr)
    return min(asked, cores)


def cmd_search(args: argparse.Namespace) -> int:
    started = time.time()  # the time budget counts from here
    import optuna

    from defect_nas.nas.run import run_search, summary_json

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from(args)
    device = Runtime(device=args.device).device  # a GPU asked for but absent fails here, before anything is written
    if config.task == "segment":
        from defect_nas.cli.segment import cmd_search_segment

        return cmd_search_segment(args, config, device, started)
    feasible = check_budget_feasible(config)
    if args.target_accuracy is not None:
        from defect_nas.cli.target import cmd_target

        return cmd_target(args, config, feasible, capped_workers(args.workers), device, started)
    run_dir = run_folder(args, config)
    workers = capped_workers(args.workers)
    check_outside_dataset(run_dir, config.dataset)
    if RunFolder(run_dir).config.is_file():  # whatever the storage: another study must not overwrite this run
        stored = json.loads(RunFolder(run_dir).config.read_text())
        config = config.resuming(stored)
        if config.differences(stored):
            raise DefectNasError(f"{run_dir} holds a search with other settings: "
                                 f"{config.describe_differences(stored)};"
                                 f" pass --run NAME for a new one")
    writable_folder(run_dir, "--results")
    log = progress_log(args.json)
    if args.json:
        summary = run_search(config, run_dir, storage_url=args.storage, workers=workers, threads=args.threads,
                             log=log, started=started, device=device)
        print_json(summary_json(summary))
    else:
        with Live(console=console, refresh_per_second=1, transient=False) as live:
            def progress(study, info):
                live.update(progress_table(study, info))

            summary = run_search(config, run_dir, storage_url=args.storage, workers=workers,
                                 threads=args.threads, progress=progress, log=live.console.print, started=started,
                                 device=device)
        if not console.is_terminal:  # piped: the last frame ends without a newline, and the next line ran into it
            console.line()
        print_summary(summary)
    return exit_status(summary, run_dir)


NOTHING_LEARNED_STATUS = 3


def exit_status(summary: dict, run_dir: Path) -> int:
    """0 for a search that ran to its end; 130 when interrupted (143 by SIGTERM), 1 when its workers
    kept dying, 3 when no candidate learned anything (no winner): each after its results so far
    were written, with one line saying how to go on."""
    again = f"results so far are in {run_dir}; run the same command to resume"
    if summary.get("interrupted"):  # first: a stopped run says how to resume (its diagnosis is in the summary)
        how = "" if stopped_by() == "SIGINT" else f" by {stopped_by()}"
        print(f"defect-nas: interrupted{how}: {again}", file=sys.stderr)
        return stop_status()
    if summary.get("nothing_learned"):  # after the report is written: the diagnosis, no winner
        print(f"defect-nas: error: {summary['nothing_learned']}", file=sys.stderr)
        return NOTHING_LEARNED_STATUS
    if summary.get("incomplete"):
        print(f"defect-nas: error: the search stopped early ({summary['incomplete']}, "
              f"{summary.get('workers_died', 0)} worker death(s)): {again}", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> None:
    import optuna

    from defect_nas.nas.context import load_context
    from defect_nas.nas.storage import open_storage
    from defect_nas.nas.workers import create_or_load_study, run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runtime = Runtime(device=args.device, threads=args.threads).for_worker(os.getpid()).apply()
    storage = open_storage(args.storage)
    try:
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    except Exception as e:
        raise DefectNasError(f"storage is not readable: {str(e).splitlines()[0][:200]}") from None
    if args.study not in summaries:
        raise DefectNasError(f"no study {args.study!r} in that storage (found: {', '.join(summaries) or 'none'})")
    attrs = summaries[args.study].user_attrs
    config = SearchConfig.from_dict(attrs["config"])
    stop = attrs.get("stop") or {}
    run_dir = Path(args.results) / f"worker-{args.study}"
    check_outside_dataset(run_dir, config.dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = load_context(config, run_dir, log=lambda m: console.print(m, style="dim"),
                       fingerprint=attrs.get("dataset_fingerprint"), runtime=runtime)
    study = create_or_load_study(config, storage, args.study, worker=os.getpid() % 1000 + 100)
    run_worker(ctx, study, stop.get("n_trials"), stop.get("deadline"))
    console.print(f"worker done: study {args.study} has {len(study.trials)} trials")
