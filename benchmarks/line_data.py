"""Does defect-nas learn line-shaped data in 20 minutes, and better than the practitioner's route?

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/line_data.py \
        [--sets strip panel kolektor] [--arms search prototype efficientnet-lite0 search+teacher] [--time-budget 20m] \
        [--work DIR] [--kolektor-mirror GIT_DIR]

Builds each line-like set with ``benchmarks/line_sets.py`` in a temporary folder (never committed;
``--work`` keeps it): ``strip`` and ``panel`` from NEU-Seg, ``kolektor`` from a fetched copy of
KolektorSDD (see that script); then, one arm at a time with the machine to itself, for the same
wall time:

- ``search``: README's command, ``defect-nas search --budget-flops 100e6 --dataset DIR --time-budget T``;
  the exported winner is re-checked by ``defect-nas predict`` on the recorded test split
  (``scripts/check_predict.py``), and the row reports the mean of its final seeds.
- ``prototype``: the residual prototype fitted to 100M MACs, trained alone for the whole budget at the
  data's size with the search's final recipe, its head pooling included (one seed, every core; epochs
  sized to the time).
- ``efficientnet-lite0``: ImageNet-initialised EfficientNet-Lite0 (weights from the installed package)
  fine-tuned whole through the product's teacher path (SGD, class-balanced batches on imbalanced
  data) at 224 px for the whole budget (one seed, every core): what a practitioner would try first.
- ``search+teacher``: the search command with ``--teacher efficientnet-lite0 --teacher-input-size 224``:
  the teacher is fine-tuned inside the same budget (at most 30% of it) and every candidate distils
  from it (Kim et al.'s transfer, decided by measurement: compare with ``search``).
- ``search+gmp`` / ``prototype+gmp``: ``search`` and ``prototype`` with max-pooled heads (``--head-pool gmp``).

Each row: balanced accuracy on the test split (percent), per-class recall, MACs, ONNX Runtime
latency (batch 1, 1 thread, this CPU), wall time. Rows are appended to
``results/benchmarks/line_data.json`` (a list) and ``line_data.csv``; an arm already measured for a set
is skipped, so the benchmark can be split across sessions; ``--replace`` measures it again (after a
change to the search) and replaces its row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from line_sets import KOLEKTOR_REPO, build_named, export_kolektor  # noqa: E402

from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402

OUT = ROOT / "results" / "benchmarks"
ARMS = ("search", "prototype", "efficientnet-lite0", "search+teacher", "search+gmp", "prototype+gmp")


def parse_minutes(text: str) -> float:
    return float(text[:-1]) * 60 if text.endswith("m") else float(text)


TEACHER_FLAGS = ("--teacher", "efficientnet-lite0", "--teacher-input-size", "224")


def run_search(data: Path, work: Path, budget_s: float, extra: tuple[str, ...] = (), arm: str = "search") -> dict:
    runs = work / "runs"
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "defect_nas", "search", "--budget-flops", "100e6", "--dataset", str(data),
                        "--time-budget", f"{budget_s:g}", "--results", str(runs), "--json", *extra],
                       capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t
    run = runs / f"{data.name}-100m"
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    row = {"arm": arm, "flags": list(extra), "exit_code": p.returncode,
           "wall_s": round(wall, 1), "run_dir": str(run),
           "stderr_tail": p.stderr.strip().splitlines()[-1:] if p.returncode else []}
    w = summary.get("winner")
    if not w:
        return {**row, "balanced_accuracy_mean": None, "seeds": 0, "note": summary.get("nothing_learned")}
    check = subprocess.run([sys.executable, "scripts/check_predict.py", str(run)], capture_output=True, text=True,
                           cwd=ROOT)
    pred = json.loads((run / "predict_check.json").read_text()) if check.returncode == 0 else {}
    return {**row, "balanced_accuracy_mean": w["test_accuracy_mean"], "balanced_accuracy_std": w["test_accuracy_std"],
            "seed_accuracies": w["test_accuracies"], "seeds": w["seeds"], "macs": w["macs"], "params": w["params"],
            "latency_onnx_ms": w["latency_onnx_ms"], "input_size": w["input_size"], "epochs_run": w["epochs_run"],
            "recall": w.get("per_class_accuracy"), "predict_balanced_accuracy": pred.get("balanced_accuracy"),
            "predict_recall": pred.get("recall"), "recipe": summary.get("recipe"),
            "timeline": summary.get("timeline"), "trial_counts": summary.get("trial_counts")}


def onnx_latency(model, shape) -> float:
    from defect_nas.measure.latency import measure_latency

    return measure_latency(model.cpu().eval(), shape, backend="onnx", batch_size_throughput=None, threads=1).latency_ms


def run_prototype(data: Path, work: Path, budget_s: float, head_pool: str = "gap") -> dict:
    import torch

    from defect_nas.core.budget import fit
    from defect_nas.core.search_config import SearchConfig
    from defect_nas.data import load_dataset, make_split
    from defect_nas.nas.context import SearchContext, train_candidate
    from defect_nas.search_spaces.base import get_space

    t = time.time()
    torch.set_num_threads(os.cpu_count() or 1)
    config = SearchConfig(dataset=str(data), head_pool=head_pool)
    ds = load_dataset(data)
    ctx = SearchContext(config, ds, make_split(ds, seed=0), None, work)
    spec = fit(ctx.recipe.shape_head(get_space("residual").prototypes(ctx.task)["resnet-proto"]), ctx.budget)
    left = budget_s - (time.time() - t) - 15  # what a search keeps back for export, roughly
    _, r = train_candidate(ctx, spec, config.final_epochs, None, 0, patience=config.patience, time_budget_s=left,
                           ema_epochs=config.ema_epochs)
    from defect_nas.search_spaces.build import build

    model = build(spec.at_size(ds.image_size[0]))
    lat = onnx_latency(model, (ds.channels, *ds.image_size))
    m = r["test_metrics"]
    return {"arm": "prototype" if head_pool == "gap" else f"prototype+{head_pool}", "exit_code": 0,
            "wall_s": round(time.time() - t, 1),
            "balanced_accuracy_mean": m["balanced_accuracy"], "seeds": 1, "seed_accuracies": [m["balanced_accuracy"]],
            "macs": r["macs"], "params": r["params"], "latency_onnx_ms": lat, "input_size": r["input_size"],
            "epochs_run": [r["epochs_run"]], "recall": dict(zip(ds.class_names, m["per_class_accuracy"])),
            "recipe": ctx.recipe.describe()}


def run_efficientnet(data: Path, work: Path, budget_s: float) -> dict:
    import torch

    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.teacher import TeacherConfig, ensure_teacher
    from defect_nas.measure.flops import fvcore_macs

    t = time.time()
    torch.set_num_threads(os.cpu_count() or 1)
    ds = load_dataset(data)
    split = make_split(ds, seed=0)
    cfg = TeacherConfig(arch="efficientnet-lite0", epochs=200, input_size=224)
    left = budget_s - (time.time() - t) - 15
    teacher = ensure_teacher(ds, split, cfg, work / "cache", log=lambda m: None, time_budget_s=left)
    m = teacher.test_metrics
    lat = onnx_latency(teacher.model, (ds.channels, 224, 224))
    wall = time.time() - t if not teacher.from_cache else teacher.seconds  # a re-run reads the training's own time
    return {"arm": "efficientnet-lite0", "exit_code": 0, "wall_s": round(wall, 1),
            "balanced_accuracy_mean": m["balanced_accuracy"], "seeds": 1, "seed_accuracies": [m["balanced_accuracy"]],
            "macs": fvcore_macs(teacher.model.cpu().eval(), ds.channels, 224),
            "params": sum(p.numel() for p in teacher.model.parameters()), "latency_onnx_ms": lat, "input_size": 224,
            "epochs_run": [json.loads((teacher.cache_dir / "meta.json").read_text())["epochs_run"]],
            "recall": dict(zip(ds.class_names, m["per_class_accuracy"])), "recipe": "SGD 1e-3, whole net, 224 px"}


def run_search_teacher(data: Path, work: Path, budget_s: float) -> dict:
    """The search distilling from EfficientNet-Lite0 fine-tuned inside the same budget (ImageNet init,
    224 px, at most TEACHER_SHARE of the time): does Kim et al.'s transfer pay on this data?"""
    return run_search(data, work, budget_s, TEACHER_FLAGS, "search+teacher")


def run_search_gmp(data: Path, work: Path, budget_s: float) -> dict:
    """The search command with ``--head-pool gmp``: every candidate max-pools its last map."""
    return run_search(data, work, budget_s, ("--head-pool", "gmp"), "search+gmp")


def run_prototype_gmp(data: Path, work: Path, budget_s: float) -> dict:
    return run_prototype(data, work, budget_s, "gmp")


RUNNERS = {"search": run_search, "prototype": run_prototype, "efficientnet-lite0": run_efficientnet,
           "search+teacher": run_search_teacher, "search+gmp": run_search_gmp, "prototype+gmp": run_prototype_gmp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["strip", "tile-clean-whole"],
                    help="line_sets.py's names (strip, tile-clean-whole, ...) or kolektor")
    ap.add_argument("--kolektor-mirror", type=Path, help=f"bare git mirror of github.com/{KOLEKTOR_REPO}")
    ap.add_argument("--judge", type=Path, help="a NEU-Seg segmenter's winner folder, for sets named -clean")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--time-budget", default="20m")
    ap.add_argument("--work", type=Path, help="folder for the data and runs (default: a temporary one)")
    ap.add_argument("--replace", action="store_true",
                    help="measure these sets and arms again, replacing their rows (after a change to the search)")
    args = ap.parse_args()
    budget = parse_minutes(args.time_budget)
    out_json = OUT / "line_data.json"
    rows = json.loads(out_json.read_text()) if out_json.is_file() else []
    work = args.work or Path(tempfile.mkdtemp(prefix="line-data-"))
    for name in args.sets:
        data = work / "data" / name
        if not data.is_dir():
            if name == "kolektor":
                if args.kolektor_mirror is None or not args.kolektor_mirror.is_dir():
                    sys.exit(f"kolektor: fetch github.com/{KOLEKTOR_REPO} and pass --kolektor-mirror GIT_DIR")
                info = export_kolektor(args.kolektor_mirror, data)
            else:
                info = build_named(name, data, args.judge)
            print(json.dumps(info), flush=True)
        for arm in args.arms:
            if args.replace:
                rows = [r for r in rows
                        if not (r["dataset"] == name and r["arm"] == arm and r.get("budget_s") == budget)]
            if any(r["dataset"] == name and r["arm"] == arm and r.get("budget_s") == budget for r in rows):
                print(f"{name} / {arm}: already measured", flush=True)
                continue
            print(f"{name} / {arm}: {budget / 60:g} min", flush=True)
            row = {"dataset": name, **RUNNERS[arm](data, work / arm, budget), "budget_s": budget,
                   "environment": environment(0)}
            rows.append(row)
            write_json(out_json, rows)
            write_csv(OUT / "line_data.csv", [{k: (json.dumps(v) if isinstance(v, dict | list) else v)
                                               for k, v in r.items() if k != "environment"} for r in rows])
            print(json.dumps({k: row.get(k) for k in ("dataset", "arm", "balanced_accuracy_mean", "seeds", "macs",
                                                       "latency_onnx_ms", "wall_s", "recall")}), flush=True)


if __name__ == "__main__":
    main()
