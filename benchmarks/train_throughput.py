"""Training throughput: the fast candidate trainer vs a plain fp32 DataLoader loop, same model, same data.

    DEFECT_NAS_DATA=../shared/datasets PYTHONPATH=. .venv/bin/python benchmarks/train_throughput.py \
        [--epochs 2 --input-size 200 --repeats 3 --threads 1]

Both sides train the same ~100M-MAC residual prototype (``resnet-proto`` fitted to 100M MACs at
200 px), built fresh with the same seed, for the same epochs on the NEU training part
(``make_split(ds, seed=0)``), batch 32, AdamW (lr 2e-3, wd 1e-4, the trainer's warmup + cosine
schedule), cross-entropy with label smoothing 0.1, random D4 flips/rotations. They differ only in
how batches are made and run:

* baseline: a ``torch.utils.data.Dataset`` over the in-memory uint8 images that returns one fp32
  image per item with a per-image random flip/rot90 in ``__getitem__``, ``DataLoader(batch_size=32,
  shuffle=True, num_workers=0, drop_last=True)``, contiguous NCHW fp32 model and input;
* fast: ``evaluators.trainer.train`` (uint8 stack in memory, whole-batch D4 views as tensor ops,
  bf16 autocast where the CPU has native bf16, channels_last), plus ablation rows (fp32 NCHW,
  fp32 channels_last) of the same trainer so the table shows where the speed comes from.

What is timed: the baseline from the first batch request to the last optimizer step (data pipeline
included, no evaluation). The fast rows use ``TrainResult.images_per_second``, which also covers
the trainer's per-epoch validation and best-state copy; the validation set is cut to 32 images so
this is small, and its cost is measured separately and recorded (it slightly *lowers* the fast
numbers). Repeats run all variants side by side, alternating the order each repeat; the table
gives median img/s per variant and the median of the per-repeat ratios to that repeat's baseline.

``--arch ARCH.json`` times another architecture (an LW net, say) and ``--name`` names the output.
Writes results/benchmarks/train_throughput.{csv,json} (``--name``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from defect_nas.core.budget import Budget, fit  # noqa: E402
from defect_nas.core.cost import cost  # noqa: E402
from defect_nas.core.spec import ArchSpec  # noqa: E402
from defect_nas.data import load_dataset, make_split  # noqa: E402
from defect_nas.data.preprocess import resize_uint8  # noqa: E402
from defect_nas.evaluators.runtime import Runtime, resolve_precision  # noqa: E402
from defect_nas.evaluators.trainer import TrainConfig, TrainData, evaluate, train  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402
from defect_nas.search_spaces.base import Task, get_space  # noqa: E402
from defect_nas.search_spaces.build import build  # noqa: E402

BATCH = 32
LR, WD, SMOOTHING = 2e-3, 1e-4, 0.1

# name -> (precision, channels_last); "fast" is the trainer as a search runs it (precision auto).
FAST_VARIANTS = {  # name -> (precision, channels_last, device)
    "fast fp32 NCHW": ("fp32", False, "cpu"),
    "fast fp32 channels_last": ("fp32", True, "cpu"),
    "fast (bf16 auto + channels_last)": ("auto", True, "cpu"),
}
GPU_VARIANT = "fast on GPU (bf16 auto + channels_last)"


class PlainImages(TorchDataset):
    """The usual per-item Dataset: one fp32 image per call, a random flip + rot90 per image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float().div(255)
        if torch.rand(()) < 0.5:
            x = torch.flip(x, dims=(-1,))
        x = torch.rot90(x, int(torch.randint(0, 4, ())), dims=(-2, -1)).contiguous()
        return x, self.labels[i]


def fresh_model(spec, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build(spec)


def run_baseline(spec, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> dict:
    model = fresh_model(spec, seed)
    model.train()
    torch.manual_seed(seed)
    loader = DataLoader(PlainImages(x, y), batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=SMOOTHING)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * epochs
    warmup = min(steps_per_epoch, total // 4)  # same schedule as the trainer (1 warmup epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return LR * (step + 1) / warmup
        return 0.5 * LR * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    step, seen, last_losses = 0, 0, []
    start = time.perf_counter()
    for _ in range(epochs):
        last_losses = []
        for xb, yb in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last_losses.append(loss.item())
            step += 1
            seen += len(yb)
    seconds = time.perf_counter() - start
    return {
        "images": seen,
        "seconds": seconds,
        "img_s": seen / seconds,
        "last_epoch_loss": statistics.mean(last_losses),
        "precision": "fp32",
        "channels_last": False,
    }


def run_fast(spec, data: TrainData, epochs: int, input_size: int | None, seed: int, precision: str, cl: bool,
             device: str = "cpu") -> dict:
    model = fresh_model(spec, seed)
    cfg = TrainConfig(epochs=epochs, input_size=input_size, batch_size=BATCH, optimizer="adamw", lr=LR,
                      weight_decay=WD, label_smoothing=SMOOTHING, views=True, channels_last=cl, seed=seed)
    r = train(model, data, cfg, runtime=Runtime(device=device, precision=precision))
    # what the per-epoch validation (32 images) costs, timed on its own, to show it is small
    t = time.perf_counter()
    evaluate(model, data.x_val, data.y_val, data.class_names, input_size=input_size, precision=precision)
    val_s = time.perf_counter() - t
    steps = max(1, len(data.x_train) // BATCH)
    return {"images": steps * BATCH * epochs, "seconds": r.seconds, "img_s": r.images_per_second,
            "last_epoch_loss": r.history[-1]["loss"], "precision": r.precision, "channels_last": cl,
            "val_seconds_per_epoch": val_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--input-size", type=int, default=200, help="200 (NEU native) or e.g. 100 (proxy fidelity)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--max-train-images",
        type=int,
        default=None,
        help="cap the training images (a seeded random subset), to make a run cheaper",
    )
    ap.add_argument("--no-ablation", action="store_true", help="only baseline vs the fast trainer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cuda or cuda:N adds the fast trainer on that GPU, same "
                    "model and epochs, side by side with this machine's CPU rows (written as train_throughput_gpu.*)")
    ap.add_argument("--arch", help="an arch.json to time instead of resnet-proto fitted to 100M MACs (e.g. the LW "
                    "reference winner, results/neu-100m-lw/winner/arch.json)")
    ap.add_argument("--name", default="train_throughput", help="output file stem under --out")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    Runtime(threads=args.threads).apply()
    if Runtime(device=args.device).is_cuda:  # a GPU asked for but absent: one line before any work
        FAST_VARIANTS[GPU_VARIANT] = ("auto", True, args.device)
    wall0 = time.perf_counter()

    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    train_idx = split.train
    if args.max_train_images:
        perm = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(args.seed))
        train_idx = train_idx[perm[: args.max_train_images]].sort().values
    val_idx = split.val[torch.randperm(len(split.val), generator=torch.Generator().manual_seed(args.seed))[:BATCH]]
    native = ds.images.shape[-1]
    size = args.input_size
    x_train, y_train = ds.images[train_idx], ds.labels[train_idx]
    k = len(ds.class_names)

    if args.arch:
        base_spec = ArchSpec.from_json(Path(args.arch).read_text())
        label = Path(args.arch).parent.parent.name + "/" + Path(args.arch).parent.name
    else:
        base_spec, label = fit(get_space("residual").prototypes(Task(1, 200, k))["resnet-proto"], Budget(100e6)), \
            "resnet-proto@100M"
    spec = (
        base_spec
        if size == base_spec.input_size
        else type(base_spec).from_dict({**base_spec.to_dict(), "input_size": size})
    )
    c = cost(spec)
    # the fast trainer resizes inside train() (before its timer); the baseline gets the same pixels, resized up front
    x_base = resize_uint8(x_train, size) if size != native else x_train
    data = TrainData(x_train, y_train, ds.images[val_idx], ds.labels[val_idx], ds.class_names,
                     negative_classes=ds.negative_classes)
    train_size = None if size == native else size
    print(f"NEU train {len(x_train)} images ({x_train.shape[-1]} px native -> {size} px), val for the trainer "
          f"{len(val_idx)} images; model {label}: {c.macs / 1e6:.1f} M MACs at {size} px, "
          f"{c.params / 1e3:.0f} k params; {args.epochs} epochs, {args.repeats} repeats, {args.threads} thread(s); "
          f"bf16 auto -> {resolve_precision('auto')}", flush=True)

    variants = ["baseline (DataLoader fp32 NCHW)"]
    variants += list(FAST_VARIANTS) if not args.no_ablation else ["fast (bf16 auto + channels_last)"]
    if GPU_VARIANT in FAST_VARIANTS and GPU_VARIANT not in variants:
        variants.append(GPU_VARIANT)
    # untimed warm-up of every variant on 2 batches (oneDNN primitive creation, allocator), so the
    # first timed run does not pay it
    wx, wy = x_base[: 2 * BATCH], y_train[: 2 * BATCH]
    wdata = TrainData(x_train[: 2 * BATCH], wy, data.x_val, data.y_val, ds.class_names)
    for name in variants:
        if name.startswith("baseline"):
            run_baseline(spec, wx, wy, 1, args.seed)
        else:
            run_fast(spec, wdata, 1, train_size, args.seed, *FAST_VARIANTS[name])
    runs = []
    for rep in range(args.repeats):
        order = variants if rep % 2 == 0 else variants[::-1]
        for name in order:
            if name.startswith("baseline"):
                r = run_baseline(spec, x_base, y_train, args.epochs, args.seed)
            else:
                r = run_fast(spec, data, args.epochs, train_size, args.seed, *FAST_VARIANTS[name])
            r.update(variant=name, repeat=rep)
            runs.append(r)
            print(f"  repeat {rep}: {name:34s} {r['img_s']:7.1f} img/s ({r['seconds']:.1f} s, "
                  f"last-epoch loss {r['last_epoch_loss']:.3f})", flush=True)

    base_by_rep = {r["repeat"]: r["img_s"] for r in runs if r["variant"].startswith("baseline")}
    rows = []
    for name in variants:
        mine = [r for r in runs if r["variant"] == name]
        ratios = [r["img_s"] / base_by_rep[r["repeat"]] for r in mine]
        vals = [r["img_s"] for r in mine]
        rows.append({
            "variant": name,
            "pipeline": "DataLoader, per-image aug" if name.startswith("baseline") else "in-memory uint8, batch D4",
            "precision": mine[0]["precision"],
            "channels_last": mine[0]["channels_last"],
            "img_s_median": statistics.median(vals),
            "img_s_min": min(vals),
            "img_s_max": max(vals),
            "speedup_median": statistics.median(ratios),
            "speedup_per_repeat": " ".join(f"{v:.2f}" for v in ratios),
            "last_epoch_loss_median": statistics.median(r["last_epoch_loss"] for r in mine),
        })
    df = pd.DataFrame(rows)
    headline = next(r for r in rows if r["variant"].startswith("fast (bf16"))
    wall = time.perf_counter() - wall0

    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"Training throughput, {label}, NEU {size}px, {args.epochs} epochs, "
                        f"{args.repeats} repeats, {args.threads} thread(s)")
        for col in (
            "variant",
            "precision",
            "channels_last",
            "img/s median",
            "min..max",
            "speedup (median)",
            "per repeat",
        ):
            t.add_column(col, justify="left" if col == "variant" else "right")
        for r in rows:
            t.add_row(r["variant"], r["precision"], str(r["channels_last"]), f"{r['img_s_median']:.1f}",
                      f"{r['img_s_min']:.1f}..{r['img_s_max']:.1f}", f"{r['speedup_median']:.2f}x",
                      r["speedup_per_repeat"])
        Console(width=160).print(t)
    except ImportError:
        print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    verdict = "meets" if headline["speedup_median"] >= 1.8 else "misses"
    print(f"fast trainer vs DataLoader baseline: {headline['speedup_median']:.2f}x (median of per-repeat ratios); "
          f"{verdict} the 1.8x goal. Wall time {wall:.0f} s.")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name + ("_gpu" if GPU_VARIANT in FAST_VARIANTS else "")
    df.to_csv(out / f"{stem}.csv", index=False)
    val_s = [r["val_seconds_per_epoch"] for r in runs if "val_seconds_per_epoch" in r]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data_env": os.environ.get("DEFECT_NAS_DATA"),
        "args": vars(args),
        "goal_speedup": 1.8,
        "speedup_median": headline["speedup_median"],
        "meets_goal": headline["speedup_median"] >= 1.8,
        "rows": rows,
        "runs": runs,
        "model": {
            "name": label,
            "arch_file": args.arch,
            "budget_macs": None if args.arch else 100e6,
            "input_size": size,
            "macs": c.macs,
            "params": c.params,
            "spec": spec.to_dict(),
        },
        "data": {
            "dataset": "neu",
            "fingerprint": ds.fingerprint,
            "split_seed": 0,
            "train_images": len(x_train),
            "trainer_val_images": len(val_idx),
            "native_size": native,
            "input_size": size,
        },
        "timing": {
            "baseline": "first batch request to last optimizer step; DataLoader + per-image aug included;"
            " no evaluation",
            "fast": "TrainResult.images_per_second: train loop plus per-epoch validation"
            " on 32 images and best-state copy",
            "fast_val_seconds_per_epoch_median": statistics.median(val_s) if val_s else None,
            "warmup": "every variant runs once, untimed, on 2 batches before the repeats",
            "order": "variants alternate order each repeat (forward on even repeats, reversed on odd)",
            "batches": f"batch {BATCH}, ragged last batch dropped on both sides",
        },
        "threads": args.threads,
        "wall_seconds": wall,
        "environment": environment(args.seed),
    }
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out / (stem + '.csv')} and {out / (stem + '.json')}")


if __name__ == "__main__":
    main()
