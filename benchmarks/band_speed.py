"""Can every space express networks at 1-30M MACs at NEU's 200 px, and how fast do they run?

    .venv/bin/python benchmarks/band_speed.py [--budgets 30e6 10e6 3e6 1e6] [--draws 20] [--timed 6]

For each space and budget: how many of ``--draws`` seeded proposals (``RandomTrial(seed)``, the
search's own first draws) ``budget.fit`` brings into the band (+-5%), plus the space's prototypes;
then the ONNX Runtime throughput at batch 256 on ``--threads`` threads of the prototypes and of the
first ``--timed`` fitted draws, with ResNet-50 measured once in the same process (the ratio
``x_resnet50`` is what ``defect-nas benchmark`` reports). Why: issue 26's target search picks the
cheapest budget that reaches the accuracy, and inside a band the MACs are equal by construction but
the speed is not. Writes ``results/benchmarks/band_speed.{csv,json}``; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import Infeasible
from defect_nas.core.files import write_csv, write_json
from defect_nas.measure.latency import cpu_model, measure_latency
from defect_nas.measure.runinfo import environment
from defect_nas.nas.baselines import baseline_model
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces
from defect_nas.search_spaces.build import build

TASK = Task(in_channels=1, input_size=200, num_classes=6)
SHAPE = (1, 200, 200)


def throughput(model, batch: int, threads: int, repeats: int) -> float:
    r = measure_latency(model, SHAPE, backend="onnx", batch_size_throughput=batch, repeats=repeats, warmup=2,
                        threads=threads)
    return r.throughput_img_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", nargs="+", type=float, default=[30e6, 10e6, 3e6, 1e6])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--timed", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="results/benchmarks/band_speed")
    args = ap.parse_args()
    resnet = throughput(baseline_model("resnet50", 1, 6).eval(), args.batch, args.threads, args.repeats)
    print(f"ResNet-50: {resnet:.1f} img/s (ONNX Runtime, batch {args.batch}, {args.threads} threads)", flush=True)
    rows, summary = [], []
    for space_name, space in all_spaces().items():
        for budget in args.budgets:
            designs = list(space.prototypes(TASK).items())
            fitted = 0
            for seed in range(args.draws):
                try:
                    designs.append((f"draw {seed}", fit(space.propose(RandomTrial(seed), TASK), Budget(budget))))
                    fitted += 1
                except Infeasible:
                    pass
            timed = []
            for name, spec in designs:
                if not name.startswith("draw"):
                    try:
                        spec = fit(spec, Budget(budget))
                    except Infeasible:
                        continue
                if name.startswith("draw") and sum(n.startswith("draw") for n, _ in timed) >= args.timed:
                    break
                timed.append((name, spec))
            for name, spec in timed:
                c = cost(spec)
                img_s = throughput(build(spec).eval(), args.batch, args.threads, args.repeats)
                widths = [b.out for _, b in spec.blocks()]
                rows.append({"space": space_name, "budget": budget, "design": name, "macs": c.macs, "params": c.params,
                             "min_width": min(widths), "widths": " ".join(map(str, widths)),
                             "img_s": round(img_s, 1), "x_resnet50": round(img_s / resnet, 1)})
                print(rows[-1], flush=True)
            xs = [r["x_resnet50"] for r in rows if r["space"] == space_name and r["budget"] == budget]
            summary.append({"space": space_name, "budget": budget, "draws_in_band": f"{fitted}/{args.draws}",
                            "timed": len(xs), "x_resnet50_min": min(xs, default=None),
                            "x_resnet50_median": statistics.median(xs) if xs else None,
                            "x_resnet50_max": max(xs, default=None)})
    print(f"{cpu_model()}, {args.threads} threads, ONNX Runtime batch {args.batch} at 200 px; "
          f"ResNet-50 {resnet:.1f} img/s")
    for s in summary:
        print(s)
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), rows)
    write_json(out.with_suffix(".json"), {"command": " ".join(["python", *sys.argv]), "cpu": cpu_model(),
                                          "threads": args.threads, "batch": args.batch,
                                          "resnet50_img_s": round(resnet, 1), "summary": summary,
                                          "environment": environment(0)})


if __name__ == "__main__":
    main()
