"""The winner's export: the seed with the best validation, its model folder (weights, ONNX, model
card, metrics) and the summary's winner, promotion and comparison entries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from defect_nas.core.cost import cost
from defect_nas.core.files import atomic_folder, write_json
from defect_nas.core.netscore import DEFAULT as NETSCORE
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.spec import ArchSpec
from defect_nas.core.utility import describe_objective
from defect_nas.data.preprocess import recorded_part
from defect_nas.deploy.model import model_card, save_model
from defect_nas.deploy.operating_point import measure as measure_operating_point
from defect_nas.evaluators.scoring import selection_metric
from defect_nas.measure.latency import measure_latency
from defect_nas.nas.context import SearchContext
from defect_nas.nas.phases import final_record
from defect_nas.nas.records import RunSummary, SeedRun, WinnerRecord
from defect_nas.search_spaces.build import build

if TYPE_CHECKING:
    from pathlib import Path

    from defect_nas.nas.run import Outcome


def exported_seed_key(s: SeedRun) -> tuple[float, float]:
    """Which seed is exported: the best validation score, ties (common: 100% on NEU's 240 validation
    images) to the lower validation loss at its best epoch, as the trainer picks its best epoch."""
    loss = next((h.get("val_loss") for h in s.get("history", []) if h.get("epoch") == s.get("best_epoch")), None)
    return s["val_accuracy"], -(loss if loss is not None else float("inf"))


def export_winner(ctx: SearchContext, study: optuna.Study, run_dir: Path, rows: list[dict], spec: ArchSpec,
                  outcome: Outcome, *, threads: int) -> RunSummary:
    """winner/ (weights of the seed with the best validation, ONNX, model card) and the summary's
    winner, promotion and comparison entries."""
    cfg = ctx.config
    number, runs, promoted, finalize = outcome.winner, outcome.runs, outcome.promoted, outcome.retrained
    c = cost(spec)
    final = final_record(runs)
    best_s, best_state = max(runs, key=lambda rs: exported_seed_key(rs[0]))
    size = best_s["input_size"] or spec.input_size
    deploy_spec = spec if size == spec.input_size else spec.at_size(size)
    model = build(deploy_spec)
    model.load_state_dict(best_state)
    with atomic_folder(RunFolder(run_dir).winner) as win_dir:  # a half-written export never replaces a whole one
        save_model(model, deploy_spec, ctx.dataset.class_names, win_dir)
        shape = (spec.in_channels, size, size)
        eager = measure_latency(model, shape, backend="eager", batch_size_throughput=32, threads=threads)
        onnx = measure_latency(model, shape, backend="onnx", batch_size_throughput=32, threads=threads)
        metrics = best_s.get("test_metrics") or {}
        epochs = [s.get("epochs_run") for s, _ in runs]
        ema = f", weights' moving average over {cfg.ema_epochs:g} epochs" if cfg.ema_epochs else ""
        fidelity = (f"{len(runs)} seed(s) at {size}px, epochs run {epochs} (cap {cfg.final_epochs}, plateau patience "
                    f"{cfg.patience}{ema})" if finalize else "search trial at proxy fidelity")
        test_m = final["test_accuracy_mean"]
        warning = None
        if final["val_accuracy_mean"] < cfg.min_accuracy:  # exported anyway: the best there is, said plainly
            warning = (f"the winner misses the accuracy floor: {final['val_accuracy_mean']:.2f}% validation < "
                       f"--min-accuracy {cfg.min_accuracy:g} (no candidate reached it); check the data and labels, "
                       "give the search more time, or lower the floor")
        winner: WinnerRecord = {
            "name": f"trial {number} ({study.trials[number].user_attrs.get('space')})",
            "trial": number,
            "metric": best_s.get("metric") or selection_metric(ctx.dataset),  # a proxy trial's record has none
            "test_accuracy": test_m,
            "test_accuracy_mean": test_m,
            "test_accuracy_std": final["test_accuracy_std"],
            "test_accuracies": [s["test_accuracy"] for s in final["seeds"]],
            "val_accuracy_mean": final["val_accuracy_mean"],
            "macs": c.macs,
            "params": c.params,
            "netscore": measured_netscore(test_m, c.params, c.macs),
            "seeds": len(runs),
            "epochs_run": epochs,
            "fidelity": fidelity,
            "latency_ms": eager.latency_ms,
            "latency_onnx_ms": onnx.latency_ms,
            "throughput_img_s": eager.throughput_img_s,
            "throughput_onnx_img_s": onnx.throughput_img_s,
            "cpu": eager.cpu_model,
            "threads": eager.threads,
            "input_size": size,
            "confusion": metrics.get("confusion"),
            "class_names": list(ctx.dataset.class_names),
            "per_class_accuracy": dict(zip(ctx.dataset.class_names, metrics.get("per_class_accuracy") or [])),
            "retrained": finalize,
            "warning": warning,
            "final": final,
            "netscore_definition": NETSCORE.describe(), "objective": describe_objective(cfg),
        }
        trial_row = next(r for r in rows if r["number"] == number)
        chosen = next((p for p in promoted if p["trial"] == number), None)
        comparison = [
            {"name": "winner (final, mean of seeds)", "test_accuracy": test_m, "macs": c.macs, "params": c.params,
             "netscore": winner["netscore"], "latency_ms": eager.latency_ms, "fidelity": fidelity},
            *([{"name": "winner (rung 2)", "test_accuracy": chosen["test_accuracy"], "macs": c.macs, "params": c.params,
                "netscore": measured_netscore(chosen["test_accuracy"], c.params, c.macs), "latency_ms": None,
                "fidelity": chosen["fidelity"] + ", 1 seed"}] if chosen else []),
            {"name": "winner (search trial)", "test_accuracy": trial_row["test_accuracy"], "macs": c.macs,
             "params": c.params, "netscore": trial_row["netscore"], "latency_ms": eager.latency_ms,  # same net
             "fidelity": f"{cfg.epochs} epochs at {trial_row['fidelity_input_size'] or size}px, 1 seed"},
            *outcome.baselines,
        ]
        data = {"name": ctx.dataset.name, "fingerprint": ctx.dataset.fingerprint,
                "class_names": ctx.dataset.class_names, "split_seed": cfg.split_seed, "sizes": ctx.split.sizes()}
        exported = cost(deploy_spec)  # the card states what was exported (e.g. 32 px after an interrupted search)
        budget = f"{cfg.budget_flops / 1e6:g}M MACs +-{cfg.tolerance * 100:g}%"
        card = {**winner, "macs": exported.macs, "params": exported.params, "strategy": cfg.strategy,
                "spaces": ", ".join(cfg.spaces), "budget": budget}
        title = f"defect-nas winner of {run_dir.name}"
        (win_dir / "MODEL_CARD.md").write_text(model_card(title, deploy_spec, card, data))
        labels = tuple(ctx.dataset.class_names)  # the OK/NG threshold, chosen on validation as predict runs it
        val, test = (recorded_part(ctx.dataset, ctx.split, size, labels, part) for part in ("val", "test"))
        winner["operating_point"] = measure_operating_point(win_dir, val, test).report.get("test")
        write_json(win_dir / "metrics.json", winner)
    promotion = [{**{k: v for k, v in p.items() if k not in ("spec", "history")}, "chosen": p["trial"] == number}
                 for p in promoted]
    out: RunSummary = {"winner": winner, "promotion": promotion, "comparison": comparison}
    if warning:
        out["notes"] = [f"WARNING: {warning}"]
    return out
