"""A whole segmentation search run (``search --task segment``): exploration (``nas.seg_search``), rung 2 at full
size, the winner's converged seeds, export and report, inside the time budget; the run folder holds
config.json, environment.json, split.json, study.db, trials.csv, pareto.csv, summary.json, report.html and
winner/ (safetensors + ONNX, metrics.json with the test mIoU and IoU per class of each seed)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import optuna
import torch
from safetensors.torch import save_file

from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import write_csv, write_json
from defect_nas.core.interrupts import deferred_stop
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.pareto import pareto_front
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.evaluators.runtime import Runtime
from defect_nas.measure.runinfo import environment
from defect_nas.nas.phases import choose_winner, promotion_candidates
from defect_nas.nas.plan import TimePlan
from defect_nas.nas.rows import trial_rows
from defect_nas.nas.seg_search import Log, SegSearch, explore, load_search
from defect_nas.nas.storage import RunLock, fail_orphaned_trials, open_storage, sqlite_url
from defect_nas.nas.workers import create_or_load_study, enqueue_prototypes

SEG_COLUMNS = {"val_accuracy": "val_miou", "test_accuracy": "test_miou"}  # trials.csv says what the numbers are


def seg_rows(study: optuna.Study) -> list[dict]:
    """The trial rows with mIoU named as such."""
    return [{SEG_COLUMNS.get(k, k): v for k, v in r.items()} for r in trial_rows(study)]


def promote(run: SegSearch, study: optuna.Study, plan: TimePlan, log: Log) -> list[dict]:
    """Rung 2: the ``top_k`` best explored architectures (validation mIoU, ties to the utility) and the fitted
    prototype second whatever its proxy score, one seed each at full size, each given an equal part of the
    rung's time and at most ``promote_epochs``. Why the prototype: on NEU-Seg the 100 px proxy ranked it 3rd
    (67.1% vs 68.5%), and the search's winner without it reached 79.20% test mIoU (seed 0, 25 epochs) where the
    prototype alone reached 81.04% (seed 0, 20 epochs; docs/segmentation.md)."""
    cfg, size = run.config, run.task.input_size
    entrants = (promotion_candidates(trial_rows(study), cfg.top_k, cfg.min_accuracy, with_prototype=True)
                or stopped_by_time(study)[:cfg.top_k])
    records = []
    for i, row in enumerate(entrants):
        t = study.trials[row["number"]]
        kept = RunFolder(run.run_dir).path / "rung2" / f"trial-{row['number']}.json"
        record = json.loads(kept.read_text()) if kept.is_file() else None
        if record is not None and record["spec"] == t.user_attrs["spec"]:  # an earlier session of this run trained
            records.append(record)  # this architecture: a resume does not train it again
            log(f"rung 2: trial {row['number']} kept from an earlier session")
            continue
        spec = ArchSpec.from_json(t.user_attrs["spec"])
        slot = None if plan.promote_end is None else max(1.0, (plan.promote_end - time.time()) / (len(entrants) - i))
        _, s = run.train(spec, cfg.promote_epochs, size, cfg.seed, time_s=slot)
        c_macs, c_params = t.user_attrs["macs"], t.user_attrs["params"]
        records.append({"trial": row["number"], "spec": t.user_attrs["spec"], "macs": c_macs, "params": c_params,
                        "val_accuracy": s["val_miou"], "test_miou": s["test_miou"],
                        "val_netscore": measured_netscore(s["val_miou"], c_params, c_macs),
                        "epochs_run": s["epochs_run"], "train_seconds": s["train_seconds"], "input_size": size})
        write_json(kept, records[-1])
        log(f"rung 2: trial {row['number']} val mIoU {s['val_miou']:.2f}% ({s['epochs_run']} epochs at {size} px)")
    return records


def stopped_by_time(study: optuna.Study) -> list[dict]:
    """Trials the exploration's deadline stopped, best validation mIoU first: rung 2's entrants when no trial
    finished (a short budget on slow data), rather than no winner at all."""
    stopped = [t for t in study.trials if t.user_attrs.get("stopped") == "time budget"
               and t.user_attrs.get("val_accuracy") is not None and "spec" in t.user_attrs]
    return [{"number": t.number} for t in sorted(stopped, key=lambda t: (-t.user_attrs["val_accuracy"], t.number))]


def train_final(run: SegSearch, spec: ArchSpec, plan: TimePlan, log: Log) -> list[tuple[torch.nn.Module, dict]]:
    """The winner's seeds (``seed``, ``seed + 1``, ...) at full size, each an equal part of the time left."""
    cfg, size = run.config, run.task.input_size
    out = []
    for i in range(cfg.final_seeds):
        seed = cfg.seed + i
        kept = _kept_seed(run, spec, seed)
        if kept is not None:
            log(f"final seed {seed}: kept from an earlier session (test mIoU {kept[1]['test_miou']:.2f}%)")
            out.append(kept)
            continue
        slot = None if plan.final_end is None else max(1.0, (plan.final_end - time.time()) / (cfg.final_seeds - i))
        model, s = run.train(spec, cfg.final_epochs, size, seed, time_s=slot)
        s["spec_digest"] = spec.at_size(size).digest()
        folder = RunFolder(run.run_dir).path / "final"
        folder.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / f"seed-{seed}.safetensors")
        write_json(folder / f"seed-{seed}.json", s)  # last: a record without its weights is never read back
        log(f"final seed {seed}: test mIoU {s['test_miou']:.2f}% (val {s['val_miou']:.2f}%, {s['epochs_run']} epochs)")
        out.append((model, s))
    return out


def _kept_seed(run: SegSearch, spec: ArchSpec, seed: int) -> tuple[torch.nn.Module, dict] | None:
    """A final seed an earlier session of this run trained to its end (RUN/final/seed-N.json and its weights),
    for this winner; a long CPU run is split across sessions without training a finished seed again."""
    from safetensors.torch import load_file

    from defect_nas.search_spaces.build import build

    folder = RunFolder(run.run_dir).path / "final"
    record, weights = folder / f"seed-{seed}.json", folder / f"seed-{seed}.safetensors"
    sized = spec.at_size(run.task.input_size)
    if not (record.is_file() and weights.is_file()):
        return None
    s = json.loads(record.read_text())
    if s.get("spec_digest") != sized.digest():  # another winner's seed
        return None
    model = build(sized)
    model.load_state_dict(load_file(weights))
    return model.eval(), s


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def export(run: SegSearch, spec: ArchSpec, seeds: list[tuple[torch.nn.Module, dict]], log: Log) -> dict:
    """winner/: the seed with the best validation mIoU (ties to the lower seed), its model files, metrics.json
    (every seed's test scores and their mean) and the batch-1 ONNX Runtime latency on one thread."""
    from defect_nas.core.cost import cost
    from defect_nas.deploy.model import save_model
    from defect_nas.measure.latency import measure_latency

    model, best = max(seeds, key=lambda ms: (ms[1]["val_miou"], -ms[1]["seed"]))
    folder = RunFolder(run.run_dir).winner
    spec = spec.at_size(run.task.input_size)
    save_model(model, spec, run.ds.class_names, folder)
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    lat = measure_latency(model, shape, backend="onnx", batch_size_throughput=None, repeats=30, threads=1)
    c = cost(spec)
    names = run.ds.class_names
    runs = [s for _, s in seeds]
    metrics = {
        "task": "segment", "metric": "miou", "arch": spec.name, "macs": c.macs, "params": c.params,
        "class_names": list(names), "exported_seed": best["seed"], "input_size": spec.input_size,
        "test_miou": best["test_miou"], "test": best["test"], "val": best["val"],
        "test_image_defect_accuracy": best["test_image_defect_accuracy"],
        "seeds": [{k: v for k, v in s.items() if k != "history"} for s in runs],
        "test_miou_over_seeds": _mean_std([s["test_miou"] for s in runs]),
        "test_iou_over_seeds": {n: statistics.mean(s["test"]["iou"][n] for s in runs) for n in names},
        "val_miou_over_seeds": _mean_std([s["val_miou"] for s in runs]),
        "latency_onnx_b1_1thread_ms": lat.latency_ms, "latency": lat.to_dict(),
        "data": {"name": run.ds.name, "fingerprint": run.ds.fingerprint, "split_seed": run.config.split_seed,
                 "sizes": run.split.sizes()},
    }
    write_json(folder / "metrics.json", metrics)
    log(f"winner: {spec.name} {c.macs / 1e6:.1f}M MACs, test mIoU {metrics['test_miou_over_seeds']['mean']:.2f} "
        f"+- {metrics['test_miou_over_seeds']['std']:.2f}% over {len(runs)} seed(s); exported seed {best['seed']}")
    return metrics


def run_segment_search(config: SearchConfig, run_dir: Path, *, threads: int | None = None, device: str = "cpu",
                       started: float | None = None, log: Log = print, run: SegSearch | None = None) -> dict:
    """Run (or resume the exploration of) a segmentation search in ``run_dir``; returns summary.json's dict.
    ``run``: the data already loaded (``load_search``), so that bad data fails before the folder exists."""
    started = started or time.time()
    run = run or load_search(config, run_dir, Runtime(device=device, threads=threads).apply())
    runtime = run.runtime
    run_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(run_dir)
    with RunLock(run_dir):
        study = create_or_load_study(config, open_storage(sqlite_url(run_dir)), run_dir.name)
        stored = study.user_attrs.get("dataset_fingerprint")
        if stored not in (None, run.ds.fingerprint):  # resuming on other data would mix two searches
            raise DefectNasError(f"{config.dataset}: not the data {run_dir} was searched on (fingerprint "
                                 f"{run.ds.fingerprint[:12]} vs {stored[:12]}): give the same data or --run NAME")
        study.set_user_attr("dataset_fingerprint", run.ds.fingerprint)
        write_json(folder.config, {**config.to_dict(), "study": run_dir.name, "device": runtime.device})
        write_json(folder.environment, {**environment(config.seed), "threads": threads, "device": runtime.device})
        write_json(folder.split, {"fingerprint": run.ds.fingerprint, "seed": config.split_seed, **run.split.policy,
                                  "class_names": list(run.ds.class_names),
                                  "sizes": run.split.sizes(), **{p: [run.ds.paths[i] for i in run.split.part(p)]
                                                                 for p in ("train", "val", "test")}})
        fail_orphaned_trials(study)
        queued = enqueue_prototypes(study, config, run.task)
        if queued:
            log(f"generative synthesis starts from {queued} prototype(s)")
        plan = TimePlan.make(config, started, time.time(), False)
        timeline: dict = {"setup_s": round(time.time() - started, 1)}
        summary: dict = {"task": "segment", "metric": "miou", "dataset": config.dataset, "config": config.to_dict(),
                         "plan": plan.to_dict(), "timeline": timeline}
        try:
            explore(run, study, plan, log)
            timeline["explore_s"] = round(time.time() - started, 1)
            _write_rows(folder, study, summary)
            if not summary["trials"]["complete"] and not stopped_by_time(study):
                summary["nothing_learned"] = "no trial trained: give more --trials or --time-budget"
                write_json(folder.summary, summary)
                return summary
            promoted = promote(run, study, plan, log)
            timeline["promote_s"] = round(time.time() - started, 1)
            winner = choose_winner(promoted, config.accuracy_margin, config.min_accuracy)
            spec = ArchSpec.from_json(winner["spec"])
            seeds = train_final(run, spec, plan, log)
            timeline["final_s"] = round(time.time() - started, 1)
        except KeyboardInterrupt:  # what is finished is kept; the same command resumes the exploration
            summary["interrupted"] = True
            _write_rows(folder, study, summary)
            write_json(folder.summary, summary)
            return summary
        with deferred_stop(lambda: log("stopping once the winner is exported")):
            from defect_nas.nas.seg_report import write_seg_report

            metrics = export(run, spec, seeds, log)
            summary.update({"rung2": promoted, "winner": {"trial": winner["trial"], **{
                k: v for k, v in metrics.items() if k != "seeds"}}})
            timeline["total_s"] = round(time.time() - started, 1)
            write_json(folder.summary, summary)
            exported = next(m for m, s in seeds if s["seed"] == metrics["exported_seed"])
            write_seg_report(run, summary, seg_rows(study), metrics["seeds"], exported)
    return summary


def _write_rows(folder: RunFolder, study: optuna.Study, summary: dict) -> list[dict]:
    """trials.csv, pareto.csv (validation mIoU against MACs) and the trial counts in ``summary``."""
    rows = seg_rows(study)
    write_csv(folder.trials_csv, rows)
    front = pareto_front(rows, maximize="val_miou")
    write_csv(folder.pareto_csv, front)
    summary["trials"] = {"finished": sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows),
                         "complete": sum(r["state"] == "COMPLETE" for r in rows)}
    summary["front"] = [{k: r[k] for k in ("number", "macs", "params", "val_miou")} for r in front]
    return rows


def rebuild_report(run_dir: Path, log: Log = print) -> Path:
    """``report RUN`` on a segmentation run: trials.csv and pareto.csv from the study (when it is there) and
    report.html from summary.json, winner/ and the run's data (its overlays)."""
    from defect_nas.core.search_config import RUN_KEYS
    from defect_nas.deploy.model import load_model
    from defect_nas.nas.rows import load_summary, read_trials_csv
    from defect_nas.nas.seg_report import write_seg_report

    folder = RunFolder(run_dir)
    config = SearchConfig.from_dict({k: v for k, v in folder.read_config().items() if k not in RUN_KEYS})
    summary = load_summary(run_dir)
    if "winner" not in summary:
        raise DefectNasError(f"{run_dir}: the search has no winner yet (summary.json): run it to its end first")
    run = load_search(config, run_dir, Runtime())
    if folder.study_db.is_file():
        rows = _write_rows(folder, optuna.load_study(study_name=run_dir.name, storage=open_storage(
            sqlite_url(run_dir))), {})
    else:
        rows = [{SEG_COLUMNS.get(k, k): v for k, v in r.items()} for r in read_trials_csv(folder.trials_csv)]
    model, _, _ = load_model(folder.winner)
    seeds = json.loads((folder.winner / "metrics.json").read_text())["seeds"]
    path = write_seg_report(run, summary, rows, seeds, model)
    log(f"rebuilt {path} from {len(rows)} trials")
    return path
