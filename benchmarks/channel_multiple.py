"""Do channel counts in multiples the kernels like make a fitted design faster on this CPU?

    .venv/bin/python benchmarks/channel_multiple.py [--specs r0 ... r11 l0 l1 l2 l3] [--multiples 1 4 8 16]

For each spec (``rI`` / ``lI``: the residual / LW space's seeded draw 100+I, as in
``benchmarks/fidelity.py``), ``budget.fit`` into 100M MACs +-5% preferring widths that are multiples
of each ``--multiples`` value (falling back to any width when no common multiplier hits the band that
way; the ``all_multiple`` column says whether every width came out a multiple), then its batch-1
latency in ONNX Runtime at 1 thread, timed apart from anything else (``stable_latency``: 5
``torch.utils.benchmark`` measurements), all specs and multiples in one process one after the other.
Reports per multiple the median latency ratio to multiple 1 over the specs (paired: same spec, same
MAC band) and how many specs got faster. Writes ``results/benchmarks/channel_multiple.{csv,json}``.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd

from defect_nas.core.budget import Budget, fit  # noqa: E402
from defect_nas.core.cost import cost  # noqa: E402
from defect_nas.core.errors import Infeasible  # noqa: E402
from defect_nas.core.files import write_csv, write_json  # noqa: E402
from defect_nas.measure.latency import cpu_model  # noqa: E402
from defect_nas.measure.quiet_latency import stable_latency  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402
from defect_nas.search_spaces.base import RandomTrial, Task, get_space  # noqa: E402
from defect_nas.search_spaces.build import build  # noqa: E402

SPACES = {"r": "residual", "l": "lw"}
TASK = Task(in_channels=1, input_size=200, num_classes=6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", default=[f"r{i}" for i in range(12)] + [f"l{i}" for i in range(4)])
    ap.add_argument("--multiples", nargs="+", type=int, default=[1, 4, 8, 16])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/benchmarks/channel_multiple")
    args = ap.parse_args()
    rows = []
    for name in args.specs:
        proposal = get_space(SPACES[name[0]]).propose(RandomTrial(100 + int(name[1:])), TASK)
        for multiple in args.multiples:
            try:
                spec = fit(proposal, Budget(100e6, 0.05), multiple=multiple)
            except Infeasible as e:
                print(f"{name} x{multiple}: {e}")
                continue
            widths = [b.out for _, b in spec.blocks()]
            c = cost(spec)
            lat = stable_latency(build(spec), (1, 200, 200), threads=args.threads)
            rows.append({"spec": name, "multiple": multiple, "macs": c.macs, "params": c.params,
                         "widths": " ".join(map(str, widths)),
                         "all_multiple": all(w % multiple == 0 for w in widths),
                         "latency_ms": round(lat.latency_ms, 4), "cv": round(lat.cv, 4)})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    base = df[df.multiple == 1].set_index("spec").latency_ms
    df["ratio_to_1"] = [round(r.latency_ms / base[r.spec], 3) if r.spec in base else None for r in df.itertuples()]
    summary = []
    for m, g in df.groupby("multiple"):
        g = g.dropna(subset=["ratio_to_1"])
        summary.append({"multiple": int(m), "specs": len(g),
                        "median_ratio_to_1": round(statistics.median(g.ratio_to_1), 3),
                        "faster": int((g.ratio_to_1 < 1).sum()), "all_widths_multiple": int(g.all_multiple.sum()),
                        "median_latency_ms": round(statistics.median(g.latency_ms), 3)})
    print(f"{cpu_model()}, {args.threads} thread(s), ONNX Runtime batch 1 at 200 px")
    print(pd.DataFrame(summary).to_string(index=False))
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), df.astype(object).where(df.notna(), None).to_dict("records"))
    write_json(out.with_suffix(".json"), {"command": " ".join(["python", *sys.argv]), "cpu": cpu_model(),
                                          "threads": args.threads, "summary": summary, "environment": environment(0)})


if __name__ == "__main__":
    main()
