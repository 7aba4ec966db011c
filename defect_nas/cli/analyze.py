"""``defect-nas analyze``: Kim et al.'s per-layer analyses of a teacher or an exported model.

    defect-nas analyze teacher --dataset neu [--teacher-init imagenet|scratch|scratch-bn --teacher-epochs 30 ...]
    defect-nas analyze results/neu-100m/winner --dataset neu
         [--images 240] [--k 5] [--out results/analysis/NAME]

Writes ``analysis.csv``, ``analysis.json`` (with the model's provenance, accuracy and the
environment) and ``analysis.png`` (weight change, dead-channel sparsity and disentanglement per
conv layer). The images are the first ``--images`` of the validation split, at the model's input
size. A teacher is loaded from its cache (trained first if missing, as ``defect-nas teacher``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defect_nas.cli.evaluate import add_data_args, add_teacher_args, load_data, runtime_from, teacher_config_from
from defect_nas.cli.numbers import positive_int
from defect_nas.cli.output import console, print_json
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder, write_csv, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="per-layer weight change, dead-channel sparsity, disentanglement (Kim et al.)")
    p.add_argument("target", help="'teacher' (the cached teacher of the --teacher flags) or a model folder")
    add_data_args(p)
    add_teacher_args(p)
    p.add_argument("--images", type=positive_int, default=240, help="validation images to measure on (default 240)")
    p.add_argument("--k", type=positive_int, default=5, help="neighbours of the geodesic graph (Kim et al.: 5)")
    p.add_argument("--out", help="output folder (default results/analysis/<name>)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> None:
    import torch

    from defect_nas.data.preprocess import model_input, resize_uint8
    from defect_nas.inspection.analysis import analyze
    from defect_nas.measure.runinfo import environment

    if args.images < args.k + 2:
        raise DefectNasError(f"--images {args.images}: need more than --k + 1 = {args.k + 1} images")
    if args.out:  # before the analysis, not after it
        writable_folder(args.out, "--out")
    runtime = runtime_from(args)
    dataset, split = load_data(args)
    if args.target == "teacher":
        model, initial, size, info = _teacher(args, dataset, split, runtime)
    else:
        from defect_nas.deploy.model import load_model

        model, spec, _ = load_model(args.target)
        initial, size = None, spec.input_size  # a searched net's initial weights are not kept: no weight change
        folder = Path(args.target).resolve()
        info = {"model": args.target, "name": f"{folder.parent.name}-{folder.name}"}
    idx = split.val[: args.images]
    x = model_input(resize_uint8(dataset.images[idx], size))  # the one input rule
    rows = [r.to_dict() for r in analyze(model.cpu(), x, initial, k=args.k)]
    out = Path(args.out or Path("results") / "analysis" / info["name"])
    write_csv(out / "analysis.csv", rows)
    write_json(out / "analysis.json", {**info, "images": len(idx), "input_size": size, "k": args.k,
                                       "layers": rows, "environment": environment(None),
                                       "torch": torch.__version__})
    _plot(rows, out / "analysis.png", info["name"])
    if args.json:
        print_json({"out": str(out), "layers": rows})
        return
    for r in rows:
        wc = "n/a" if r["weight_change"] is None else f"{r['weight_change']:.3f}"
        console.print(f"{r['layer']:>12}  {r['channels']:4d} ch  weight change {wc:>6}  sparsity "
                      f"{100 * r['sparsity']:5.1f}%  d {r['disentanglement']:.3f}")
    console.print(f"wrote {out}/analysis.csv, .json, .png")


def _teacher(args: argparse.Namespace, dataset, split, runtime):
    import torch

    from defect_nas.evaluators.teacher import build_teacher, ensure_teacher

    cfg = teacher_config_from(args)
    if cfg is None:
        raise DefectNasError("analyze teacher needs --teacher vgg16 (or another registered teacher), not none")
    t = ensure_teacher(dataset, split, cfg, args.cache, log=lambda m: console.print(m, style="dim"), runtime=runtime)
    meta = json.loads((t.cache_dir / "meta.json").read_text())
    initial = None  # ImageNet conv weights are fixed; a random init is known only if it was seeded
    if not cfg.init.startswith("scratch") or meta.get("initial_weights") == "seeded":
        torch.manual_seed(cfg.seed)  # the same initial weights the teacher started from (ensure_teacher seeds so)
        initial = build_teacher(cfg, len(dataset.class_names), dataset.images.shape[1])
    name = f"teacher-{cfg.arch}-{cfg.init}-{cfg.epochs}ep-{cfg.input_size}px"
    info = {"name": name, "model": "teacher", "provenance": t.provenance, "teacher_config": cfg.to_dict(),
            "test_accuracy": t.test_accuracy, "val_accuracy": t.val_accuracy, "cache": str(t.cache_dir)}
    return t.model, initial, cfg.input_size, info


def _plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(range(1, len(rows) + 1))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    series = (("weight_change", "weight change rate (eq. 2)"), ("sparsity", "dead-channel sparsity (eq. 3)"),
              ("disentanglement", "disentanglement d (eq. 6)"))
    for ax, (key, label) in zip(axes, series):
        ys = [r[key] if r[key] is not None else float("nan") for r in rows]
        ax.bar(layers, ys, color="#4477aa")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("conv layer")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
