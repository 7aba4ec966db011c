"""How well does each proxy the engine can use rank converged accuracy, and what does it cost here?

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/fidelity.py \
        [--specs r0 r1 ... l5] [--proxy-sizes 64 100 200] [--proxy-epochs 12] \
        [--converged-epochs 60] [--only proxy|converged] [--gpu-reference DIR] [--device cuda --jobs 4]

Specs: ``rI`` = the residual space's seeded draw 100+I fitted to 100M MACs, ``lI`` the LW space's
(the same as ``defect-nas sample --space residual --budget-flops 100e6 --input-size 200 --seed 100+I``).
A proxy is one training at (input size, ``--proxy-epochs``) with the trainer's defaults, no
distillation; the validation accuracy it reports at epoch 3, 6 and 12 of that schedule is what
Hyperband's rungs see in a search. "Converged" is 200 px for ``--converged-epochs`` (test
accuracy of the best-validation epoch). Each finished training is appended to
``results/benchmarks/fidelity_runs.csv`` at once, so the benchmark can be split across sessions
and resumes where it stopped. ``--gpu-reference`` (e.g. ``../shared/measurements/2026-11-25-gpu-neu``)
supplies converged accuracies measured on a GPU for specs not yet converged here; the table says
which source each row used, and the GPU figures are used only after at least two of them were
confirmed on this CPU. ``--device cuda`` trains on a GPU (``--jobs`` at once, each row records its
device): converged rows measured so are labelled ``cuda`` in the table's sources, and their proxy
seconds are not this CPU's. Writes ``results/benchmarks/fidelity.{csv,json}`` (rank correlations).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from resumable import run_jobs, upgrade_header  # noqa: E402
from scipy.stats import kendalltau, spearmanr

from defect_nas.core.budget import Budget, fit  # noqa: E402
from defect_nas.core.files import append_csv_row, read_csv_rows  # noqa: E402
from defect_nas.core.spec import ArchSpec  # noqa: E402
from defect_nas.data import load_dataset, make_split  # noqa: E402
from defect_nas.evaluators.run import train_spec  # noqa: E402
from defect_nas.evaluators.runtime import Runtime  # noqa: E402
from defect_nas.evaluators.trainer import TrainConfig  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402
from defect_nas.search_spaces.base import RandomTrial, Task, get_space  # noqa: E402

SPACES = {"r": "residual", "l": "lw"}
RUNG_EPOCHS = (3, 6, 12)
FIELDS = ["spec", "kind", "input_size", "epochs", "seed", "params", "macs", "val_by_epoch", "val_accuracy",
          "test_accuracy", "best_epoch", "seconds", "images_per_second", "threads", "device"]


def make_spec(name: str, task: Task) -> ArchSpec:
    space = get_space(SPACES[name[0]])
    return fit(space.propose(RandomTrial(100 + int(name[1:])), task), Budget(100e6, 0.05))


def run_one(name: str, kind: str, size: int, epochs: int, threads: int, device: str) -> dict:
    """One training (in a worker process when ``--jobs`` > 1)."""
    runtime = Runtime(device=device, threads=threads).apply()
    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    spec = make_spec(name, Task(ds.images.shape[1], ds.images.shape[-1], len(ds.class_names)))
    cfg = TrainConfig(epochs=epochs, input_size=size, seed=0)
    start = time.perf_counter()
    s = train_spec(spec, ds, split, cfg, latency=False, runtime=runtime).summary
    by_epoch = {h["epoch"]: round(h["val_accuracy"], 3) for h in s["history"]}
    return {"spec": name, "kind": kind, "input_size": size, "epochs": epochs, "seed": 0, "params": s["params"],
            "macs": s["macs"], "val_by_epoch": json.dumps(by_epoch), "val_accuracy": s["val_accuracy"],
            "test_accuracy": s["test_accuracy"], "best_epoch": s["best_epoch"],
            "seconds": round(time.perf_counter() - start, 1), "images_per_second": s["train_images_per_second"],
            "threads": threads, "device": runtime.device}


def gpu_reference(folder: Path | None) -> dict[str, float]:
    if folder is None or not (folder / "rank60.json").is_file():
        return {}
    return {r["arch"]: r["test"] for r in json.loads((folder / "rank60.json").read_text())}


def correlations(rows: list[dict], gpu: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per space (residual, LW, and both pooled): one row per proxy (size x rung epoch) and one for
    parameter count, Spearman and Kendall against converged test accuracy (this CPU's where
    measured, else the GPU reference)."""
    conv = {r["spec"]: float(r["test_accuracy"]) for r in rows if r["kind"] == "converged"}
    device = {r["spec"]: r.get("device") or "cpu" for r in rows if r["kind"] == "converged"}
    confirmed = [(n, conv[n], gpu[n]) for n in conv if n in gpu and device[n] == "cpu"]
    use_gpu = len(confirmed) >= 2
    target = {**(gpu if use_gpu else {}), **conv}
    source = {n: (device[n] if n in conv else "gpu reference") for n in target}
    spaces = {"residual": {n for n in target if n[0] == "r"}, "lw": {n for n in target if n[0] == "l"}}
    if all(spaces.values()):  # both spaces converged: also pooled, as a search over both ranks them
        spaces["both"] = set(target)
    out, notes = [], []
    for space, names in spaces.items():
        if 0 < len(names) < 4:  # said, not silently left out (a table written without --gpu-reference)
            notes.append(f"{space}: {len(names)} converged spec(s), fewer than 4: no rank rows"
                         + ("" if use_gpu or space != "residual" else " (the GPU reference needs --gpu-reference)"))
        out += _rank_rows(space, [r for r in rows if r["spec"] in names], {n: target[n] for n in names})
    check = pd.DataFrame([{"spec": n, "cpu_test": c, "gpu_test": g} for n, c, g in confirmed])
    table = pd.DataFrame(out)
    table.attrs["sources"] = source
    table.attrs["notes"] = notes
    return table, check


def _rank_rows(space: str, rows: list[dict], target: dict[str, float]) -> list[dict]:
    """Spearman and Kendall of each proxy (size x rung epoch) and of parameter count against
    ``target`` over the specs of ``space``; a row needs at least 4 specs. Seconds are this CPU's:
    the proxy rows trained here, else (a proxy run only on a GPU) per-epoch seconds of this CPU's
    converged runs at that size times the rung's epochs, labelled as such."""
    proxies = [r for r in rows if r["kind"] == "proxy"]
    out = []
    for size in sorted({int(r["input_size"]) for r in proxies}):
        for rung in RUNG_EPOCHS:
            pts = []
            for r in proxies:
                by = json.loads(r["val_by_epoch"])
                if int(r["input_size"]) == size and str(rung) in by:
                    pts.append((by[str(rung)], target[r["spec"]]))
            if len(pts) >= 4:
                x, y = zip(*pts)
                sec, how = _cpu_seconds(rows, size, rung)
                out.append({"space": space, "proxy": f"{size}px x {rung} ep", "n": len(pts),
                            "spearman": spearmanr(x, y).statistic, "kendall": kendalltau(x, y).statistic,
                            "median_seconds": sec, "seconds_source": how})
    params = {r["spec"]: int(r["params"]) for r in rows}
    pts = [(params[n], target[n]) for n in target if n in params]
    if len(pts) >= 4:
        x, y = zip(*pts)
        out.append({"space": space, "proxy": "parameter count alone", "n": len(pts),
                    "spearman": spearmanr(x, y).statistic, "kendall": kendalltau(x, y).statistic,
                    "median_seconds": 0.0, "seconds_source": "none: no training"})
    return out


def _cpu_seconds(rows: list[dict], size: int, rung: int) -> tuple[float | None, str]:
    """Median seconds on this CPU of ``rung`` epochs at ``size`` px (see _rank_rows)."""
    cpu = [r for r in rows if int(r["input_size"]) == size and (r.get("device") or "cpu") == "cpu"]
    proxy = [float(r["seconds"]) * rung / int(r["epochs"]) for r in cpu if r["kind"] == "proxy"]
    if proxy:
        return float(pd.Series(proxy).median()), "measured: proxy trainings on this CPU"
    conv = [float(r["seconds"]) * rung / int(r["epochs"]) for r in cpu if r["kind"] == "converged"]
    if conv:
        return float(pd.Series(conv).median()), f"estimated: this CPU's {size} px converged runs' seconds per epoch"
    return None, "not measured on this CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", nargs="+", default=[f"r{i}" for i in range(12)] + [f"l{i}" for i in range(6)])
    ap.add_argument("--proxy-sizes", nargs="+", type=int, default=[64, 100, 200])
    ap.add_argument("--proxy-epochs", type=int, default=12)
    ap.add_argument("--converged-epochs", type=int, default=60)
    ap.add_argument("--converged-specs", nargs="+", help="default: every spec in --specs")
    ap.add_argument("--only", choices=["proxy", "converged", "table"])
    ap.add_argument("--gpu-reference", type=Path)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads per training")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the trainings on the GPU")
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once, each in its own process")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv = out / "fidelity_runs.csv"
    upgrade_header(runs_csv, FIELDS, {"device": "cpu"})
    have = {(r["spec"], r["kind"], int(r["input_size"]), int(r["epochs"])) for r in read_csv_rows(runs_csv)}
    jobs = []
    if args.only in (None, "proxy"):
        jobs += [(n, "proxy", s, args.proxy_epochs) for n in args.specs for s in args.proxy_sizes]
    if args.only in (None, "converged"):
        jobs += [(n, "converged", 200, args.converged_epochs) for n in (args.converged_specs or args.specs)]
    jobs = [j for j in jobs if j not in have]
    if args.jobs > 1:
        run_jobs(run_one, jobs, runs_csv, FIELDS, args.jobs, (args.threads, args.device))
    for name, kind, size, epochs in jobs if args.jobs <= 1 else []:
        row = run_one(name, kind, size, epochs, args.threads, args.device)
        append_csv_row(runs_csv, row, FIELDS)
        print({k: row[k] for k in ("spec", "kind", "input_size", "epochs", "val_accuracy", "test_accuracy",
                                   "seconds")}, flush=True)
    rows = read_csv_rows(runs_csv)
    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    table, check = correlations(rows, gpu_reference(args.gpu_reference))
    if not check.empty:
        print("converged here vs the GPU reference (test %, 200 px, seed 0):")
        print(check.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for note in table.attrs.get("notes", []):
        print(note)
    if table.empty:
        print("not enough converged specs yet for rank correlations")
        return
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    table.to_csv(out / "fidelity.csv", index=False)
    (out / "fidelity.json").write_text(json.dumps({
        "correlations": table.to_dict(orient="records"), "converged_source": table.attrs["sources"],
        "cpu_vs_gpu_converged": check.to_dict(orient="records"), "runs": rows,
        "protocol": {"proxy_epochs": args.proxy_epochs, "rungs": RUNG_EPOCHS, "converged_epochs": args.converged_epochs,
                     "train": "TrainConfig defaults, no distillation, seed 0", "split": split.sizes(),
                     "target": "converged test accuracy (best-validation epoch)"},
        "dataset_fingerprint": ds.fingerprint, "environment": environment(0),
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
