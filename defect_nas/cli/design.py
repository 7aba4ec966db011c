"""Commands that need no training: ``spaces``, ``sample``, ``cost``, ``netscore``."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from defect_nas.cli.numbers import finite_float, int_in, positive_float, positive_int, seed_int
from defect_nas.cli.output import console, millions, print_json
from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import write_text_atomic
from defect_nas.core.netscore import NetScoreConfig, netscore
from defect_nas.core.spec import ArchSpec, load_spec
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces, get_space

EXPONENT = finite_float(0, 10)  # NetScore's exponents: 0 drops a term; negative ones reward the opposite


def add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", type=int_in(32, 512), default=200, help="input height = width in pixels (32..512)")
    p.add_argument("--in-channels", type=int, default=1, choices=[1, 3], help="1 = grayscale, 3 = RGB")
    p.add_argument("--classes", type=int_in(2, 10_000), default=6, help="number of classes (NEU: 6)")


def task_from(args: argparse.Namespace) -> Task:
    if not 32 <= args.input_size <= 512:
        raise DefectNasError(f"--input-size {args.input_size} is outside 32..512")
    if not 2 <= args.classes <= 10_000:
        raise DefectNasError(f"--classes {args.classes} must be at least 2")
    return Task(args.in_channels, args.input_size, args.classes)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the search spaces and their prototypes with their cost")
    add_task_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("sample", help="draw one architecture from a space and fit it to the budget")
    p.add_argument("--space", default="residual", help="search space name (see 'defect-nas spaces')")
    p.add_argument("--prototype", help="take this prototype of the space instead of a random draw")
    p.add_argument("--budget-flops", type=positive_float, default=100e6, help="target MACs (fvcore FLOPs)")
    p.add_argument("--tolerance", type=finite_float(0, 1, above=True, below=True), default=0.05,
                   help="relative band around the target (0.05 = +-5%%)")
    p.add_argument("--max-params", type=positive_int, help="upper limit on parameters")
    p.add_argument("--no-fit", action="store_true", help="print the spec as drawn, without fitting it")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="also write the spec JSON to this file")
    add_task_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("cost", help="MACs and params of a spec: analytic, fvcore and ptflops")
    p.add_argument("spec", help="ArchSpec JSON file")
    p.add_argument("--input-size", type=int_in(32, 512), help="count at this input size (default: the spec's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("netscore", help="NetScore of an accuracy / params / MACs triple")
    p.add_argument("--accuracy", type=finite_float(0, 100), required=True, help="accuracy in percent")
    p.add_argument("--params", type=positive_float, required=True, help="number of parameters")
    p.add_argument("--macs", type=positive_float, required=True, help="multiply-accumulates per image")
    p.add_argument("--alpha", type=EXPONENT, default=2.0)
    p.add_argument("--beta", type=EXPONENT, default=0.5)
    p.add_argument("--gamma", type=EXPONENT, default=0.5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_netscore)


def cmd_spaces(args: argparse.Namespace) -> None:
    task = task_from(args)
    rows = []
    for name, space in sorted(all_spaces().items()):
        for pname, spec in space.prototypes(task).items():
            c = cost(spec)
            rows.append({"space": name, "description": space.description, "prototype": pname,
                         "macs": c.macs, "params": c.params})
    if args.json:
        print_json({"task": vars(task), "prototypes": rows})
        return
    table = Table(title=f"search spaces (prototype cost at {task.input_size}x{task.input_size}x{task.in_channels})")
    for col in ("space", "prototype", "MACs", "params"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["space"], r["prototype"], millions(r["macs"]), f"{r['params']:,}")
    console.print(table)
    for name, space in sorted(all_spaces().items()):
        console.print(f"[bold]{name}[/]: {space.description}")


def cmd_sample(args: argparse.Namespace) -> None:
    task = task_from(args)
    space = get_space(args.space)
    if args.prototype:
        protos = space.prototypes(task)
        if args.prototype not in protos:
            raise DefectNasError(f"--prototype {args.prototype!r}: {args.space} has {', '.join(protos)}")
        spec = protos[args.prototype]
    else:
        spec = space.propose(RandomTrial(args.seed), task)
    budget = Budget(args.budget_flops, args.tolerance, args.max_params)
    if not args.no_fit:
        spec = fit(spec, budget)
    if args.out:
        write_text_atomic(args.out, spec.to_json() + "\n")
    c = cost(spec)
    if args.json:
        print_json({"spec": spec.to_dict(), "macs": c.macs, "params": c.params, "in_budget": budget.contains(c.macs)})
        return
    console.print_json(spec.to_json())
    console.print(
        f"[bold]{spec.name}[/]: {c.macs:,} MACs ({millions(c.macs)}; 2xMACs {millions(2 * c.macs)}),"
        f" {c.params:,} params; budget {budget.low / 1e6:.1f}M..{budget.high / 1e6:.1f}M MACs"
    )


CROSS_CHECK_MAX_PARAMS, CROSS_CHECK_MAX_MACS = 50_000_000, 20e9  # beyond: building and tracing the model
# takes gigabytes and minutes (8 blocks x 4096 channels crashed under a 4 GB memory limit)


def spec_costs(spec: ArchSpec, input_size: int | None = None) -> dict[str, Any]:
    """The analytic count (no model needed) beside fvcore's and ptflops' on the built model; the
    cross-checks are skipped, with the reason, for a spec too big to build cheaply."""
    size = input_size or spec.input_size
    c = cost(spec, size)
    r: dict[str, Any] = {"input_size": size, "macs": c.macs, "macs_fvcore": None, "macs_ptflops": None,
                         "params": c.params, "flops_2x_macs": 2 * c.macs, "cross_check": "done"}
    if c.params > CROSS_CHECK_MAX_PARAMS or c.macs > CROSS_CHECK_MAX_MACS:
        r["cross_check"] = (f"skipped: {c.params:,} params / {c.macs:,} MACs is over the "
                            f"{CROSS_CHECK_MAX_PARAMS:,} / {CROSS_CHECK_MAX_MACS:,.0f} that are built and traced")
        return r
    from defect_nas.measure.flops import fvcore_macs, ptflops_macs  # slow imports: only when counting
    from defect_nas.search_spaces.build import build

    model = build(spec)
    r["macs_fvcore"] = fvcore_macs(model, spec.in_channels, size)
    r["macs_ptflops"] = ptflops_macs(model, spec.in_channels, size)
    return r


def cmd_cost(args: argparse.Namespace) -> None:
    spec = load_spec(args.spec)
    if args.input_size is not None and not 32 <= args.input_size <= 512:
        raise DefectNasError(f"--input-size {args.input_size} is outside 32..512")
    r = spec_costs(spec, args.input_size)
    if args.json:
        print_json(r)
        return
    table = Table(title=f"{spec.name or args.spec} at {r['input_size']}x{r['input_size']}x{spec.in_channels}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    table.add_row("MACs (analytic)", f"{r['macs']:,}", "conv + linear, BN excluded: what the budget counts")
    if r["macs_fvcore"] is None:
        table.add_row("MACs (fvcore, ptflops)", "-", r["cross_check"])
    else:
        table.add_row("MACs (fvcore)", f"{r['macs_fvcore']:,}", "fvcore on the built model, conv + linear ops")
        table.add_row("MACs (ptflops)", f"{r['macs_ptflops']:,}",
                      "ptflops pytorch backend: + BN, ReLU, pooling, biases")
    table.add_row("params", f"{r['params']:,}", "sum of p.numel()")
    table.add_row("2 x MACs", f"{r['flops_2x_macs']:,}", "FLOPs as papers counting mul and add separately")
    console.print(table)


def cmd_netscore(args: argparse.Namespace) -> None:
    cfg = NetScoreConfig(args.alpha, args.beta, args.gamma)
    score = netscore(args.accuracy, args.params, args.macs, cfg)
    if args.json:
        print_json({"netscore": score, "config": cfg.to_dict()})
        return
    console.print(f"NetScore = [bold]{score:.2f} dB[/]   ({cfg.describe()})")
