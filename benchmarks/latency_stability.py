"""Is a design's measured latency repeatable, and can the search tell fast designs from slow ones?

    .venv/bin/python benchmarks/latency_stability.py [--specs r0 ... r7 l0 l1] [--repeats 5] [--threads 1]

For each spec (``rI`` / ``lI``: the residual / LW space's seeded draw 100+I fitted to 100M MACs, as in
``benchmarks/fidelity.py``), ``--repeats`` measurements under three protocols, all batch 1, one image
of 200 px:

- ``search_median_busy``: the search's old in-trial timing (eager, median of 7 runs after 2 warm-up),
  with a training process running beside it on the other cores, as trials train in a search;
- ``search_min_busy``: the same runs, their minimum (what the engine now stores and caps on);
- ``quiet_onnx``: ``stable_latency`` (ONNX Runtime, torch.utils.benchmark) on a quiet machine, as the
  search measures the compared designs after exploration.

Reports per protocol: the median coefficient of variation across repeats (repeatability) and the
Spearman rank correlation of the per-spec medians with the quiet ONNX figures and with MACs.
Writes ``results/benchmarks/latency_stability.{csv,json}``. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr

from defect_nas.core.budget import Budget, fit  # noqa: E402
from defect_nas.core.cost import cost  # noqa: E402
from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.measure.latency import cpu_model, measure_latency  # noqa: E402
from defect_nas.measure.quiet_latency import stable_latency  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402
from defect_nas.search_spaces.base import RandomTrial, Task, get_space  # noqa: E402
from defect_nas.search_spaces.build import build  # noqa: E402

SPACES = {"r": "residual", "l": "lw"}
TASK = Task(num_classes=6, in_channels=1, input_size=200)


def make_spec(name: str):
    return fit(get_space(SPACES[name[0]]).propose(RandomTrial(100 + int(name[1:])), TASK), Budget(100e6, 0.05))


def _busy(stop) -> None:
    """A trial training beside the measurement: forward + backward of a 100M-MAC net at 100 px."""
    torch.set_num_threads(1)
    model = build(make_spec("r0").at_size(100))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 1, 100, 100), torch.randint(0, 6, (32,))
    while not stop.is_set():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def cv(xs: list[float]) -> float:
    return statistics.stdev(xs) / statistics.fmean(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", default=[f"r{i}" for i in range(8)] + ["l0", "l1"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/benchmarks/latency_stability")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    specs = {n: make_spec(n) for n in args.specs}
    shape = (1, 200, 200)
    rows = []
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    busy = ctx.Process(target=_busy, args=(stop,), daemon=True)
    busy.start()
    time.sleep(5)  # the training loop is up
    for _ in range(args.repeats):
        for n, spec in specs.items():
            r = measure_latency(build(spec), shape, backend="eager", batch_size_throughput=None, warmup=2,
                                repeats=7, threads=args.threads)
            rows += [{"spec": n, "protocol": "search_median_busy", "latency_ms": r.latency_ms},
                     {"spec": n, "protocol": "search_min_busy", "latency_ms": r.latency_ms_min}]
    stop.set()
    busy.join(timeout=30)
    for _ in range(args.repeats):
        for n, spec in specs.items():
            q = stable_latency(build(spec), shape, threads=args.threads)
            rows.append({"spec": n, "protocol": "quiet_onnx", "latency_ms": q.latency_ms})
    df = pd.DataFrame(rows)
    macs = {n: cost(s).macs for n, s in specs.items()}
    per = df.groupby(["protocol", "spec"])["latency_ms"].agg(["median", list]).reset_index()
    quiet = per[per.protocol == "quiet_onnx"].set_index("spec")["median"]
    table = []
    for proto, g in per.groupby("protocol", sort=False):
        g = g.set_index("spec")
        table.append({
            "protocol": proto, "specs": len(g), "repeats": args.repeats,
            "median_cv_pct": round(100 * statistics.median(cv(v) for v in g["list"]), 2),
            "max_cv_pct": round(100 * max(cv(v) for v in g["list"]), 2),
            "spearman_vs_quiet_onnx": round(float(spearmanr(g["median"], quiet[g.index]).statistic), 3),
            "spearman_vs_macs": round(float(spearmanr(g["median"], [macs[n] for n in g.index]).statistic), 3),
        })
    per_spec = [{"spec": n, "macs": macs[n], "params": cost(specs[n]).params,
                 **{p: round(float(per[(per.protocol == p) & (per.spec == n)]["median"].iloc[0]), 3)
                    for p in per.protocol.unique()}} for n in specs]
    print(pd.DataFrame(table).to_string(index=False))
    print(pd.DataFrame(per_spec).to_string(index=False))
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), table)
    write_json(out.with_suffix(".json"), {
        "command": " ".join(["python", *sys.argv]), "cpu": cpu_model(), "threads": args.threads,
        "table": table, "per_spec": per_spec, "measurements": rows, "environment": environment(0)})


if __name__ == "__main__":
    main()
