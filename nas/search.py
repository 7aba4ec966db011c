"""A whole search run: study, workers, live progress, then top-k retraining, baselines, export, report.

``run_search`` drives local worker processes (one thread each) against the study, shows progress,
and when the trial count or the time budget is reached (or on Ctrl-C) writes the run folder:
trials.csv, pareto.csv, summary.json, report.html and winner/.
"""

from __future__ import annotations

import csv
import ctypes
import json
import multiprocessing as mp
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from safetensors.torch import load_file

from evaluators.latency import measure_latency
from evaluators.runinfo import environment, write_json
from nas.cost import cost, fvcore_macs
from nas.engine import (
    SearchContext, create_or_load_study, enqueue_prototypes, finished_count, load_context, mean_std, top_k,
    train_candidate, train_config, trial_rows, worker_process,
)  # fmt: skip
from nas.export import model_card, save_model
from nas.netscore import DEFAULT as NETSCORE, netscore
from nas.pareto import pareto_front
from nas.report import write_report
from nas.search_config import SearchConfig
from nas.spec import ArchSpec
from nas.storage import RunLock, fail_orphaned_trials, open_storage, redact, sqlite_url
from search_spaces.build import build

_CTX: SearchContext | None = None  # per-process context of the retraining pool


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the search process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_entry(*args) -> None:
    _die_with_parent()
    worker_process(*args)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def run_search(
    config: SearchConfig, run_dir: Path, *, storage_url: str | None = None, study_name: str | None = None,
    workers: int = 1, threads: int = 1, progress: Callable[[optuna.Study, dict], None] | None = None,
    log: Callable[[str], None] = print, finalize: bool = True,
) -> dict:  # fmt: skip
    """Run (or resume) the search in ``run_dir`` and return the summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    study_name = study_name or run_dir.name
    url = storage_url or sqlite_url(run_dir)
    with RunLock(run_dir):
        ctx = load_context(config, run_dir, log=log)
        write_json(run_dir / "config.json", {**config.to_dict(), "storage": redact(url), "study": study_name})
        write_json(run_dir / "environment.json", {**environment(config.seed), "workers": workers, "threads": threads})
        write_json(run_dir / "split.json", ctx.split.to_json(ctx.dataset))
        storage = open_storage(url)
        study = create_or_load_study(config, storage, study_name)
        if storage_url is None:
            n = fail_orphaned_trials(study)
            if n:
                log(f"resuming: {n} trial(s) left running by a stopped process were failed and re-queued")
        queued = enqueue_prototypes(study, config, ctx.task)
        if queued:
            log(f"generative synthesis starts from {queued} prototype(s)")
        budget_s = config.time_budget_s
        deadline = time.time() + budget_s * config.search_share if budget_s else None
        study.set_user_attr("stop", {"n_trials": config.trials, "deadline": deadline})
        study.set_user_attr("dataset_fingerprint", ctx.dataset.fingerprint)
        started = time.time()
        interrupted = False
        procs = []
        try:
            if config.trials is None or finished_count(study) < config.trials:
                spawn = mp.get_context("spawn")
                for w in range(workers):
                    p = spawn.Process(target=_worker_entry, args=(config.to_dict(), str(run_dir), url, study_name, w,
                                                                  config.trials, deadline, threads), daemon=False)  # fmt: skip
                    p.start()
                    procs.append(p)
                while any(p.is_alive() for p in procs):
                    if progress is not None:
                        progress(study, {"started": started, "deadline": deadline, "n_trials": config.trials})
                    for p in procs:
                        p.join(timeout=2.0 / max(1, len(procs)))
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted: stopping workers and writing results")
            for p in procs:
                p.join(timeout=20)
                if p.is_alive():
                    p.terminate()
        summary = write_results(ctx, study, run_dir, finalize=finalize and not interrupted, log=log,
                                workers=workers, threads=threads, deadline_total=(started + budget_s) if budget_s else None)  # fmt: skip
        summary["interrupted"] = interrupted
        write_json(run_dir / "summary.json", summary)
        return summary


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        if not rows:
            return
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _pool_init(config_dict: dict, run_dir: str, threads: int) -> None:
    global _CTX
    _die_with_parent()
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    _CTX = load_context(SearchConfig.from_dict(config_dict), Path(run_dir), log=lambda m: None)


def _retrain(spec_json: str, epochs: int, input_size: int | None, seed: int) -> tuple[dict, dict]:
    assert _CTX is not None
    model, r = train_candidate(_CTX, ArchSpec.from_json(spec_json), epochs, input_size, seed)
    return r, {k: v.contiguous() for k, v in model.state_dict().items()}


def _train_baseline(name: str, epochs: int, input_size: int | None) -> dict:
    """A torchvision baseline (or a prototype) trained with the same trainer, one seed."""
    from evaluators.trainer import TrainData, evaluate, train

    assert _CTX is not None
    ctx, ds, split = _CTX, _CTX.dataset, _CTX.split
    size = input_size or ds.images.shape[-1]
    model = baseline_model(name, ds.images.shape[1], len(ds.class_names), ctx)
    torch.manual_seed(ctx.config.seed)
    cfg = train_config(ctx.config, epochs, input_size, ctx.config.seed)
    data = TrainData(ds.images[split.train], ds.labels[split.train], ds.images[split.val], ds.labels[split.val],
                     ds.class_names, ctx.teacher.logits if (ctx.teacher and cfg.kd != "none") else None)  # fmt: skip
    r = train(model, data, cfg)
    test = evaluate(model, ds.images[split.test], ds.labels[split.test], ds.class_names, input_size=size)
    full = ds.images.shape[-1]
    macs = fvcore_macs(model, ds.images.shape[1], full)
    params = sum(p.numel() for p in model.parameters())
    lat = measure_latency(model, (ds.images.shape[1], full, full), backend="eager", batch_size_throughput=None,
                          warmup=2, repeats=10).latency_ms  # fmt: skip
    return {"name": name, "test_accuracy": test.accuracy, "val_accuracy": r.val_accuracy, "macs": macs,
            "params": params, "netscore": netscore(max(test.accuracy, 1e-6), params, macs), "latency_ms": lat,
            "fidelity": f"{epochs} epochs at {size}px, 1 seed"}  # fmt: skip


def baseline_model(name: str, in_channels: int, classes: int, ctx: SearchContext | None = None) -> torch.nn.Module:
    import torchvision

    if name == "resnet50":
        m = torchvision.models.resnet50(num_classes=classes)
        m.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return m
    if name == "mobilenetv2-0.35":
        m = torchvision.models.mobilenet_v2(num_classes=classes, width_mult=0.35)
        old = m.features[0][0]
        m.features[0][0] = torch.nn.Conv2d(in_channels, old.out_channels, 3, 2, 1, bias=False)
        return m
    space_name, _, proto = name.partition("/")
    from search_spaces.base import get_space

    assert ctx is not None
    return build(get_space(space_name).prototypes(ctx.task)[proto])


def write_results(ctx: SearchContext, study: optuna.Study, run_dir: Path, *, finalize: bool, log, workers: int,
                  threads: int, deadline_total: float | None) -> dict:  # fmt: skip
    cfg = ctx.config
    rows = trial_rows(study)
    write_csv(run_dir / "trials.csv", rows)
    feasible = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["val_accuracy"] is not None]
    front = pareto_front(feasible, minimize=("macs",))
    write_csv(run_dir / "pareto.csv", front)
    best = top_k(rows, cfg.top_k if finalize else 1, cfg.min_accuracy)
    summary: dict[str, Any] = {
        "run": run_dir.name, "run_dir": str(run_dir), "trial_counts": trial_counts(study),
        "netscore_definition": NETSCORE.describe(),
        "description": f"{cfg.strategy} over {', '.join(cfg.spaces)}; budget {cfg.budget_flops / 1e6:g}M MACs "
                       f"+-{cfg.tolerance * 100:g}%; trials at {cfg.epochs} epochs / "
                       f"{cfg.proxy_input_size or 'full'}px, top-{cfg.top_k} retrained {cfg.final_seeds} seeds x "
                       f"{cfg.final_epochs} epochs at {cfg.final_input_size or 'full'}px; teacher {cfg.teacher}",
        "winner": None, "top_k": [],
    }  # fmt: skip
    if not best:
        log("no trial finished: nothing to export")
        write_report(run_dir / "report.html", summary, rows)
        return summary
    specs = {r["number"]: ArchSpec.from_json(study.trials[r["number"]].user_attrs["spec"]) for r in best}
    results: dict[int, list[tuple[dict, dict]]] = {}
    if finalize:
        jobs = [(n, s) for n in specs for s in range(cfg.final_seeds)]
        log(f"retraining the top {len(specs)} candidate(s) x {cfg.final_seeds} seed(s) at full fidelity")
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn"),
                                 initializer=_pool_init, initargs=(cfg.to_dict(), str(run_dir), threads)) as pool:  # fmt: skip
            futures = {(n, s): pool.submit(_retrain, specs[n].to_json(indent=None), cfg.final_epochs,
                                           cfg.final_input_size, cfg.seed + s) for n, s in jobs}  # fmt: skip
            baseline_futures = {b: pool.submit(_train_baseline, b, cfg.baseline_epochs or cfg.epochs,
                                               cfg.proxy_input_size) for b in _baselines(cfg, ctx)}  # fmt: skip
            for (n, s), fut in futures.items():
                results.setdefault(n, []).append(fut.result())
            baselines = []
            for b, fut in baseline_futures.items():
                try:
                    baselines.append(fut.result())
                except Exception as e:  # a baseline that cannot run here must not sink the search's results
                    log(f"baseline {b} skipped: {e.__class__.__name__}: {str(e).splitlines()[0][:120]}")
    else:  # interrupted: the best trial's proxy-fidelity weights, no retraining
        n = best[0]["number"]
        r = {"val_accuracy": best[0]["val_accuracy"], "test_accuracy": best[0]["test_accuracy"],
             "test_metrics": None, "input_size": best[0]["fidelity_input_size"]}  # fmt: skip
        results[n] = [(r, load_file(run_dir / "trials" / f"{n}.safetensors"))]
        baselines = []
    top = []
    for n, runs in results.items():
        spec, c = specs[n], cost(specs[n])
        val_m, val_s = mean_std([r["val_accuracy"] for r, _ in runs])
        test_m, test_s = mean_std([r["test_accuracy"] for r, _ in runs])
        top.append({"trial": n, "spec": spec, "runs": runs, "val_accuracy_mean": val_m, "val_accuracy_std": val_s,
                    "test_accuracy_mean": test_m, "test_accuracy_std": test_s, "macs": c.macs, "params": c.params,
                    "val_netscore": netscore(max(val_m, 1e-6), c.params, c.macs),
                    "netscore": netscore(max(test_m, 1e-6), c.params, c.macs),
                    "test_accuracies": [r["test_accuracy"] for r, _ in runs]})  # fmt: skip
    # the winner is chosen on validation (mean over seeds), never on test
    eligible = [t for t in top if t["val_accuracy_mean"] >= cfg.min_accuracy] or top
    win = max(eligible, key=lambda t: (t["val_netscore"], -t["trial"]))
    best_run = max(win["runs"], key=lambda rs: rs[0]["val_accuracy"])
    spec = win["spec"]
    size = best_run[0]["input_size"] or spec.input_size
    deploy_spec = spec if size == spec.input_size else ArchSpec.from_dict({**spec.to_dict(), "input_size": size})
    model = build(deploy_spec)
    model.load_state_dict(best_run[1])
    win_dir = run_dir / "winner"
    save_model(model, deploy_spec, ctx.dataset.class_names, win_dir)
    shape = (spec.in_channels, size, size)
    eager = measure_latency(model, shape, backend="eager", batch_size_throughput=32, threads=threads)
    onnx = measure_latency(model, shape, backend="onnx", batch_size_throughput=32, threads=threads)
    metrics = best_run[0].get("test_metrics") or {}
    winner = {
        "name": f"trial {win['trial']} ({study.trials[win['trial']].user_attrs.get('space')})", "trial": win["trial"],
        "test_accuracy": win["test_accuracy_mean"], "test_accuracy_mean": win["test_accuracy_mean"],
        "test_accuracy_std": win["test_accuracy_std"], "test_accuracies": win["test_accuracies"],
        "val_accuracy_mean": win["val_accuracy_mean"], "macs": win["macs"], "params": win["params"],
        "netscore": win["netscore"], "seeds": len(win["runs"]), "latency_ms": eager.latency_ms,
        "latency_onnx_ms": onnx.latency_ms, "throughput_img_s": eager.throughput_img_s,
        "throughput_onnx_img_s": onnx.throughput_img_s, "cpu": eager.cpu_model, "threads": eager.threads,
        "input_size": size, "confusion": metrics.get("confusion"), "class_names": list(ctx.dataset.class_names),
        "per_class_accuracy": dict(zip(ctx.dataset.class_names, metrics.get("per_class_accuracy") or [])),
        "retrained": finalize, "netscore_definition": NETSCORE.describe(),
    }  # fmt: skip
    summary["winner"] = winner
    summary["top_k"] = [{k: v for k, v in t.items() if k not in ("spec", "runs")} for t in top]
    trial_row = next(r for r in rows if r["number"] == win["trial"])
    summary["comparison"] = [
        {"name": "winner (full fidelity, mean of seeds)", "test_accuracy": win["test_accuracy_mean"],
         "macs": win["macs"], "params": win["params"], "netscore": win["netscore"], "latency_ms": eager.latency_ms,
         "fidelity": f"{cfg.final_epochs} epochs at {size}px, {len(win['runs'])} seeds" if finalize else "search trial"},
        {"name": "winner (search trial)", "test_accuracy": trial_row["test_accuracy"], "macs": win["macs"],
         "params": win["params"], "netscore": trial_row["netscore"], "latency_ms": trial_row["latency_ms"],
         "fidelity": f"{cfg.epochs} epochs at {cfg.proxy_input_size or size}px, 1 seed"},
        *baselines,
    ]  # fmt: skip
    data = {"name": ctx.dataset.name, "fingerprint": ctx.dataset.fingerprint, "class_names": ctx.dataset.class_names,
            "split_seed": cfg.split_seed, "sizes": ctx.split.sizes()}  # fmt: skip
    card = {**winner, "strategy": cfg.strategy, "spaces": ", ".join(cfg.spaces),
            "budget": f"{cfg.budget_flops / 1e6:g}M MACs +-{cfg.tolerance * 100:g}%"}  # fmt: skip
    (win_dir / "MODEL_CARD.md").write_text(model_card(f"defect-nas winner of {run_dir.name}", deploy_spec, card, data))
    write_json(win_dir / "metrics.json", winner)
    write_report(run_dir / "report.html", summary, rows)
    return summary


def _baselines(cfg: SearchConfig, ctx: SearchContext) -> list[str]:
    from search_spaces.base import get_space

    out = []
    for b in cfg.baselines:
        if b == "prototypes":
            out += [f"{s}/{p}" for s in cfg.spaces for p in get_space(s).prototypes(ctx.task)]
        elif b != "none":
            out.append(b)
    return out


def summary_json(summary: dict) -> dict:
    """The --json summary: run_dir, winner (accuracy, MACs, params, NetScore), trial counts."""
    w = summary.get("winner") or {}
    keep = ("name", "trial", "test_accuracy", "test_accuracy_std", "val_accuracy_mean", "macs", "params", "netscore",
            "latency_ms", "latency_onnx_ms", "seeds", "retrained")  # fmt: skip
    return {"run_dir": summary["run_dir"], "winner": {k: w.get(k) for k in keep} if w else None,
            "trial_counts": summary["trial_counts"], "interrupted": summary.get("interrupted", False)}  # fmt: skip


def load_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}
