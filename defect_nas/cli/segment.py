"""``train`` on segmentation data (``--task segment``, or a folder of images with masks): one network with
Huang et al.'s decoder trained, scored per class (IoU) on the test part, and saved as a model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.table import Table

from defect_nas.cli.output import console, print_json
from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder, write_text_atomic
from defect_nas.core.spec import ArchSpec
from defect_nas.data.masks import MaskDataset, load_masks, mask_split
from defect_nas.data.preprocess import resize_uint8
from defect_nas.data.registry import dataset_folder
from defect_nas.evaluators.trainer import TrainConfig
from defect_nas.search_spaces.base import Task

TASKS = ("classify", "segment")


def wants_segmentation(args: argparse.Namespace) -> bool:
    """``--task segment``, or no ``--task`` and a dataset folder laid out as images with masks."""
    from defect_nas.data.masks import is_mask_layout

    task = getattr(args, "task", None)
    if task is not None:
        return task == "segment"
    try:
        return is_mask_layout(dataset_folder(args.dataset))
    except DefectNasError:
        return False  # the classification path names the problem with the dataset


def at_size(ds: MaskDataset, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (bilinear) and masks (nearest: labels never blend) at ``size``."""
    if size == ds.images.shape[-1]:
        return ds.images, ds.masks
    masks = torch.nn.functional.interpolate(ds.masks[:, None].float(), size=(size, size), mode="nearest")
    return resize_uint8(ds.images, size), masks[:, 0].to(torch.uint8)


def cmd_train_segment(args: argparse.Namespace, arch: ArchSpec | None = None) -> None:
    from defect_nas.cli.evaluate import resolve_arch, runtime_from
    from defect_nas.deploy.model import save_model
    from defect_nas.evaluators.seg_metrics import image_defect_accuracy
    from defect_nas.evaluators.segment import SegData, evaluate, train_segmenter
    from defect_nas.search_spaces.build import build

    runtime = runtime_from(args)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                       crop_scale=args.crop_scale, class_weights=args.class_weights, seed=args.seed)
    ds = load_masks(dataset_folder(args.dataset))
    split = mask_split(ds, args.split_seed)
    writable_folder(args.results, "--results")
    size = args.input_size or int(ds.images.shape[-1])
    spec = arch or resolve_arch(args.arch, Task(int(ds.images.shape[1]), size, ds.num_classes, segment=True))
    if not spec.segments:
        raise DefectNasError(f"--arch {args.arch}: a classifier; segmentation needs a spec with a decoder "
                             "(a space's prototype, e.g. prototype:lw/lw@0.35, gets one)")
    if spec.num_classes != ds.num_classes:
        raise DefectNasError(f"--arch has {spec.num_classes} classes but {args.dataset} has {ds.num_classes} "
                             f"({', '.join(ds.class_names)})")
    spec = spec.at_size(size)
    if args.budget_flops:
        spec = fit(spec, Budget(args.budget_flops))
    x, m = at_size(ds, size)
    data = SegData(x[split.train], m[split.train], x[split.val], m[split.val], ds.class_names)
    torch.manual_seed(args.seed)
    model = build(spec)
    result = train_segmenter(model, data, tcfg, runtime)
    test, _ = evaluate(model, x[split.test], m[split.test], ds.num_classes, runtime)
    from defect_nas.evaluators.segment import predict_masks

    pred = predict_masks(model, x[split.test], runtime)
    c = cost(spec)
    summary = {
        "task": "segment", "dataset": args.dataset, "dataset_fingerprint": ds.fingerprint,
        "split": {"seed": args.split_seed, **split.sizes(), **split.policy}, "input_size": size,
        "macs": c.macs, "params": c.params, "test": test.as_dict(ds.class_names),
        "test_image_defect_accuracy": image_defect_accuracy(pred, m[split.test].numpy()),
        "val": result.val.as_dict(ds.class_names), "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason, "train_seconds": round(result.seconds, 1),
        "train_images_per_second": round(result.images_per_second, 1), "train": tcfg.to_dict(),
        "runtime": runtime.to_dict(), "teacher": None,  # a segmenter distils from nothing (--teacher unused)
        "history": result.history,
    }
    run = Path(args.results) / f"train-seg-{spec.name or 'arch'}-s{args.seed}"
    save_model(model, spec, ds.class_names, run / "model")
    write_text_atomic(run / "metrics.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(run / "split.json", json.dumps({p: [ds.paths[i] for i in split.part(p).tolist()]
                                                      for p in ("train", "val", "test")}) + "\n")
    if args.json:
        print_json({k: v for k, v in summary.items() if k != "history"} | {"run_dir": str(run)})
        return
    table = Table(title=f"{spec.name or args.arch} on {ds.name} ({len(split.test)} test images)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("test mIoU (background included)", f"{test.miou:.2f}%")
    table.add_row("test mIoU of the defect classes", f"{test.miou_defects:.2f}%")
    for name, iou in zip(ds.class_names, test.iou):
        table.add_row(f"  IoU {name}", f"{iou:.2f}%")
    table.add_row("image-level defect accuracy", f"{summary['test_image_defect_accuracy']:.2f}%")
    table.add_row("val mIoU (best epoch)", f"{result.val.miou:.2f}% (epoch {result.best_epoch})")
    table.add_row("MACs / params", f"{c.macs / 1e6:.2f}M / {c.params:,}")
    table.add_row("training", f"{result.seconds:.0f} s, {result.epochs_run} epochs, "
                              f"{result.images_per_second:.0f} img/s")
    console.print(table)
    console.print(f"run folder: {run}")
