"""``train`` on segmentation data (``--task segment``, or a folder of images with masks): one network with
Huang et al.'s decoder trained, scored per class (IoU) on the test part, and saved as a model folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.table import Table

from defect_nas.cli.output import console, print_json
from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder, write_text_atomic
from defect_nas.core.spec import ArchSpec
from defect_nas.data.masks import mask_split, masks_at
from defect_nas.data.registry import dataset_folder, load_segmentation
from defect_nas.evaluators.trainer import TrainConfig
from defect_nas.search_spaces.base import Task


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


def cmd_train_segment(args: argparse.Namespace, arch: ArchSpec | None = None) -> None:
    from defect_nas.cli.evaluate import resolve_arch, runtime_from
    from defect_nas.deploy.model import save_model
    from defect_nas.evaluators.seg_metrics import image_defect_accuracy
    from defect_nas.evaluators.segment import SegData, evaluate, train_segmenter
    from defect_nas.search_spaces.build import build

    runtime = runtime_from(args)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                       crop_scale=args.crop_scale, class_weights=args.class_weights, seed=args.seed)
    ds = load_segmentation(args.dataset)
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
    x, m = masks_at(ds, size)
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


def predict_segment(args: argparse.Namespace, predictor, files: list[Path]) -> None:
    """``predict`` with a segmentation model: a mask PNG (class indices, coloured) and an overlay per image in
    ``--out``, the defect share of each image in OUT/masks.csv; with ``--truth``, mIoU and IoU per class
    against the true masks (``<stem>.png`` or ``<stem>_mask.png``, at the model's input size)."""
    import numpy as np

    from defect_nas.core.errors import DataError
    from defect_nas.data.masks import read_mask
    from defect_nas.deploy.overlay import save_mask_and_overlay
    from defect_nas.evaluators.seg_metrics import confusion, scores

    if args.csv or args.threshold is not None or args.max_escape_rate is not None:
        raise DefectNasError("--csv, --threshold and --max-escape-rate are for classifiers: a segmentation model "
                             "writes masks and overlays to --out")
    stems = [f.stem for f in files]
    twice = next((s for s in stems if stems.count(s) > 1), None)
    if twice is not None:  # OUT/masks/<stem>.png would be overwritten
        raise DefectNasError(f"two images are named {twice!r}: predict each folder into its own --out")
    truth = Path(args.truth) if args.truth else None
    if truth is not None and not truth.is_dir():
        raise DefectNasError(f"--truth {truth}: no such folder of masks")
    true_masks = {}
    if truth is not None:  # every mask is there before anything is written
        for f in files:
            found = [p for p in (truth / f"{f.stem}.png", truth / f"{f.stem}_mask.png") if p.is_file()]
            if not found:
                raise DefectNasError(f"--truth: no mask {truth / (f.stem + '.png')} for {f}: give the folder of the "
                                     "true masks (<stem>.png, or <stem>_mask.png beside each image)")
            true_masks[f] = found[0]
    out = Path(args.out or "predictions")
    writable_folder(out, "--out")
    names, k = predictor.labels, len(predictor.labels)
    cm = np.zeros((k, k), dtype=np.int64)
    rows, skipped = [], 0
    for f in files:
        try:
            x = predictor.read(f)
        except DataError as e:
            skipped += 1
            print(f"skipped {e}", file=sys.stderr)
            continue
        mask = predictor.masks(x)[0]
        save_mask_and_overlay(x[0], mask, out / "masks", out / "overlays", f.stem)
        rows.append({"path": str(f), "defect_share": float((mask > 0).mean()),
                     **{f"share_{n}": float((mask == i).mean()) for i, n in enumerate(names) if i}})
        if truth is not None:
            t = read_mask(true_masks[f])
            t = np.where(t == 255, 1, t) if k == 2 else t  # a black-and-white mask: background / defect
            if t.shape != mask.shape:  # scored at the model's size, as it was trained
                from PIL import Image

                t = np.asarray(Image.fromarray(t.astype(np.uint8)).resize(mask.shape[::-1], Image.Resampling.NEAREST))
            cm += confusion(mask, t, k)
    if not rows:
        raise DefectNasError(f"no readable image among {len(files)} file(s): give image files or folders of them")
    import pandas as pd

    write_text_atomic(out / "masks.csv", pd.DataFrame(rows).to_csv(index=False))
    result: dict = {"images": len(rows), "skipped": skipped, "out": str(out), **predictor.ran}
    if truth is not None:
        result["scores"] = scores(cm).as_dict(names)
        write_text_atomic(out / "scores.json", json.dumps(result, indent=2) + "\n")
    if args.json:
        print_json(result)
        return
    console.print(f"{len(rows)} mask(s) and overlay(s) in {out} ({predictor.ran['file']}, {predictor.ran['runtime']})"
                  + (f"; {skipped} unreadable, skipped" if skipped else ""), highlight=False)
    if truth is not None:
        s = result["scores"]
        def pct(v: float | None) -> str:
            return "absent" if v is None else f"{v:.2f}%"

        console.print(f"against {truth}: mIoU {pct(s['miou'])} (defect classes {pct(s['miou_defects'])}), "
                      + ", ".join(f"{n} {pct(v)}" for n, v in s["iou"].items()), highlight=False)


NOTHING_LEARNED_STATUS = 3


def cmd_search_segment(args: argparse.Namespace, config, device: str, started: float) -> int:
    """``search --task segment`` (``nas.seg_run``): one process; a run folder resumes its exploration."""
    from dataclasses import replace

    from defect_nas.cli.output import progress_log
    from defect_nas.cli.search import check_outside_dataset, run_folder, typed_flags
    from defect_nas.core.interrupts import stop_status
    from defect_nas.core.runfolder import RunFolder
    from defect_nas.nas.seg_run import run_segment_search

    for name, why in (("target_accuracy", "--target-accuracy: the budget ladder is built for classifiers; give "
                                          "--budget-flops for a segmentation search"),
                      ("storage", "--storage: a segmentation search trains in one process; leave --storage out")):
        if getattr(args, name, None) is not None:
            raise DefectNasError(why)
    if "min_accuracy" not in typed_flags(args):  # the classifier's 95% floor is no mIoU floor
        config = replace(config, min_accuracy=0.0)
    run_dir = run_folder(args, config)
    check_outside_dataset(run_dir, config.dataset)
    if RunFolder(run_dir).config.is_file():
        stored = json.loads(RunFolder(run_dir).config.read_text())
        if config.differences(stored):
            raise DefectNasError(f"{run_dir} holds a search with other settings: "
                                 f"{config.describe_differences(stored)}; pass --run NAME for a new one")
    from defect_nas.cli.search import capped_workers
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.nas.seg_search import load_search

    threads = args.threads * capped_workers(args.workers)  # one process: the cores the workers would have had
    run = load_search(config, run_dir, Runtime(device=device, threads=threads).apply())  # bad data: nothing written
    writable_folder(run_dir, "--results")
    summary = run_segment_search(config, run_dir, started=started, log=progress_log(args.json), run=run)
    if args.json:
        print_json(summary)
    elif "winner" in summary:
        w = summary["winner"]
        table = Table(title=f"segmentation winner ({run_dir})")
        table.add_column("measure")
        table.add_column("value", justify="right")
        over = w["test_miou_over_seeds"]
        table.add_row("test mIoU, mean of seeds", f"{over['mean']:.2f} +- {over['std']:.2f}%")
        for name, iou in w["test_iou_over_seeds"].items():
            table.add_row(f"  IoU {name}", f"{iou:.2f}%")
        table.add_row("MACs / params", f"{w['macs'] / 1e6:.2f}M / {w['params']:,}")
        table.add_row("ONNX Runtime, batch 1, 1 thread", f"{w['latency_onnx_b1_1thread_ms']:.2f} ms")
        console.print(table)
        console.print(f"model: {RunFolder(run_dir).winner}; report: {RunFolder(run_dir).report}")
    if summary.get("interrupted"):
        print(f"defect-nas: interrupted: results so far are in {run_dir}; run the same command to resume",
              file=sys.stderr)
        return stop_status()
    if summary.get("nothing_learned"):
        print(f"defect-nas: error: {summary['nothing_learned']}", file=sys.stderr)
        return NOTHING_LEARNED_STATUS
    return 0


INT8_MAX_MIOU_DROP = 1.0  # points of test mIoU an int8 segmenter may lose against fp32 ONNX Runtime, or it is not kept
CALIBRATION_IMAGES = 256


def export_segmenter(run_dir: Path, model, spec: ArchSpec, labels: tuple[str, ...], formats: tuple[str, ...],
                     out: Path) -> list[Path]:
    """``export`` of a segmentation run: the model files, and with ``onnx-int8`` static quantization calibrated
    on the run's training images, kept only within a point of fp32's test mIoU (int8_check.json says)."""
    from defect_nas.core.runfolder import RunFolder
    from defect_nas.deploy.model import save_model
    from defect_nas.deploy.runtimes import predictions
    from defect_nas.evaluators.seg_metrics import confusion, scores

    if any(f.startswith("openvino") for f in formats):
        raise DefectNasError("--format openvino: not checked for segmentation models yet; export onnx or onnx-int8")
    if "onnx-int8" not in formats:
        return save_model(model, spec, labels, out, formats)
    config = RunFolder(run_dir).read_config()
    ds = load_segmentation(config["dataset"])
    stored = RunFolder(run_dir).read_split().get("fingerprint")
    if stored != ds.fingerprint:
        raise DefectNasError(f"{config['dataset']}: not the data {run_dir} was searched on (fingerprint differs): "
                             "give the run's own data to calibrate int8")
    split = mask_split(ds, config["split_seed"])
    x, m = masks_at(ds, spec.input_size)
    cal = x[split.train][:CALIBRATION_IMAGES].numpy().astype("float32") / 255
    written = save_model(model, spec, labels, out, formats, calibration=cal)
    x_test, m_test = x[split.test].numpy().astype("float32") / 255, m[split.test].numpy()
    k = len(labels)
    fp32 = scores(confusion(predictions(out / "model.onnx", x_test), m_test, k)).miou
    int8 = scores(confusion(predictions(out / "model.int8.onnx", x_test), m_test, k)).miou
    kept = int8 >= fp32 - INT8_MAX_MIOU_DROP
    check = {"test_images": len(m_test), "fp32_onnxruntime_miou": fp32, "int8_miou": int8,
             "int8_minus_fp32_points": int8 - fp32, "kept": kept, "max_drop_points": INT8_MAX_MIOU_DROP,
             "calibration_images": len(cal), "runtime": "ONNX Runtime (CPUExecutionProvider), static QDQ"}
    written.append(write_text_atomic(out / "int8_check.json", json.dumps(check, indent=2) + "\n"))
    console.print(f"onnx-int8 on the run's test split ({len(m_test)} images): mIoU {int8:.2f}% vs fp32 {fp32:.2f}% "
                  f"({int8 - fp32:+.2f} points)", highlight=False)
    if not kept:
        (out / "model.int8.onnx").unlink(missing_ok=True)
        console.print(f"not kept: int8 loses more than {INT8_MAX_MIOU_DROP} point of mIoU; deploy model.onnx (fp32)",
                      style="yellow")
    return written
