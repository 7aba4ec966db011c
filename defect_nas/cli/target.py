"""``search --target-accuracy A``: the budget ladder of nas.target, run from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from defect_nas.cli.output import console, print_json, progress_log
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder
from defect_nas.core.search_config import SearchConfig


def target_run_folder(args: argparse.Namespace, config: SearchConfig) -> Path:
    """``--run`` or ``<dataset>-target-<A>`` (e.g. neu-target-99.5) under ``--results``."""
    dataset = Path(config.dataset).name or config.dataset
    return Path(args.results) / (args.run or f"{dataset}-target-{args.target_accuracy:g}")


def cmd_target(args: argparse.Namespace, config: SearchConfig, feasible: Callable[[float], bool], workers: int,
               device: str, started: float) -> int:
    from defect_nas.cli.search import check_outside_dataset, exit_status
    from defect_nas.nas.run import run_search
    from defect_nas.nas.target import run_target

    if args.storage:
        raise DefectNasError("--target-accuracy runs one study per budget on this machine: drop --storage "
                             "(shared PostgreSQL workers need a fixed --budget-flops)")
    run_dir = target_run_folder(args, config)
    check_outside_dataset(run_dir, config.dataset)
    writable_folder(run_dir, "--results")
    log = progress_log(args.json)

    def run_one(cfg: SearchConfig, folder: Path, begun: float) -> dict:
        return run_search(cfg, folder, workers=workers, threads=args.threads, log=log, started=begun, device=device)

    result = run_target(config, run_dir, args.target_accuracy, run_one, started=started, feasible=feasible, log=log)
    w = result["winner"]
    if args.json:
        print_json({k: result[k] for k in ("run_dir", "target_accuracy", "cost", "stopped", "winner", "warning")}
                   | {"front": result["front"]})
    else:
        for p in result["front"]:
            mark = "*" if p["chosen"] else " "
            val = "no winner" if p["val_accuracy_mean"] is None else f"{p['val_accuracy_mean']:.2f}% val"
            console.print(f"{mark} {p['run']}: {val}, {p['macs']} MACs, {p['latency_onnx_ms']} ms")
        if w:
            console.print(f"winner: {w['run']} -> {run_dir / 'winner'} (front: {run_dir / 'front.csv'})")
    if result["warning"]:
        print(f"defect-nas: warning: {result['warning']}", file=sys.stderr)
    if w is None:
        print(f"defect-nas: error: no budget of the ladder produced a converged network; see {run_dir}",
              file=sys.stderr)
        return 3
    return exit_status({"interrupted": result["interrupted"]}, run_dir)
