"""Commands that touch data: ``datasets``, ``teacher``, ``train``."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from defect_nas.cli.numbers import finite_float, int_in, number, positive_float, positive_int, seed_int, threads_int
from defect_nas.cli.output import console, millions, print_json
from defect_nas.cli.progress import epoch_progress
from defect_nas.core.budget import Budget, fit
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder
from defect_nas.core.search_config import BOUNDS, kd_for
from defect_nas.core.spec import ArchSpec, load_spec
from defect_nas.data import DATASETS, import_neu, list_datasets, load_dataset, make_split, resolve_data_root
from defect_nas.evaluators.runtime import DEVICES_HELP, Runtime
from defect_nas.evaluators.teacher import (
    INITS,
    TeacherConfig,
    ensure_teacher,
    teacher_choices,
    teacher_config,
    usable_teacher,
)
from defect_nas.evaluators.trainer import TrainConfig
from defect_nas.search_spaces.base import Task, get_space

DATASET_HELP = (f"a registered name ({', '.join(DATASETS.names())}), a folder under $DEFECT_NAS_DATA, "
                "or a folder path (ImageFolder layout)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list datasets under $DEFECT_NAS_DATA, or import one")
    p.add_argument("action", nargs="?", choices=["list", "import"], default="list")
    p.add_argument("name", nargs="?", help="with import: the dataset kind (neu)")
    p.add_argument("path", nargs="?", help="with import: the downloaded folder or .zip")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("teacher", help="train (or load the cached) teacher and print its test accuracy")
    add_data_args(p)
    add_teacher_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("train", help="train one architecture and write a run folder")
    p.add_argument(
        "--arch", required=True, help="ArchSpec JSON file, or prototype:SPACE/NAME (e.g. prototype:lw/lw@0.35)"
    )
    p.add_argument("--budget-flops", type=positive_float, help="fit the architecture to this many MACs first")
    add_data_args(p)
    add_train_args(p)
    add_teacher_args(p)
    p.add_argument("--results", default="results", help="folder for run folders (default: results)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--task", choices=["classify", "segment"],
                   help="segment: per-pixel masks (a decoder on the backbone); default: what the data is "
                        "(images/ + masks/, or x_mask.png beside x, is segmentation data)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="neu", help=DATASET_HELP)
    p.add_argument("--split-seed", type=seed_int, default=0, help="seed of the train/val/test split")
    p.add_argument("--threads", type=threads_int, help="torch threads (default: all cores)")
    add_device_arg(p)


def add_device_arg(p: argparse.ArgumentParser, default: str = "auto", what: str = "train") -> None:
    """``--device`` of train, teacher, search, worker and benchmark (one help text, one default)."""
    p.add_argument("--device", default=default, help=f"where to {what}: {DEVICES_HELP} (default {default})")


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--input-size", type=int_in(32, 512), help="train and test at this size (default: the data's)")
    p.add_argument("--batch-size", type=int_in(1, 4096), default=32)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--lr", type=finite_float(0, 10, above=True), help="learning rate (default: 2e-3 AdamW, 0.05 SGD)")
    p.add_argument("--kd", choices=["l2", "kl"], default="kl", help="distillation loss when a teacher is used")
    p.add_argument("--kd-alpha", type=number(BOUNDS["kd_alpha"]), default=0.5, help="weight of the distillation term")
    p.add_argument("--crop-scale", type=finite_float(0, 1, above=True), default=1.0,
                   help="< 1 adds random resized crops")
    p.add_argument("--class-weights", choices=["none", "balanced"], default="none")
    p.add_argument("--sampler", choices=["shuffle", "balanced"], default="shuffle")
    p.add_argument("--patience", type=positive_int, help="early stopping after this many epochs without gain")
    p.add_argument("--ema-epochs", type=finite_float(0), default=5.0,
                   help="keep a moving average of the weights over about this many epochs (0: the raw weights)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of initialisation and batch order")


def add_teacher_args(p: argparse.ArgumentParser, default: str = "vgg16", cache: bool = True, **teacher_help) -> None:
    """The teacher flags of ``train``, ``teacher`` and ``search`` (one list, read from the registry)."""
    p.add_argument("--teacher", choices=teacher_choices(), default=default, **teacher_help)
    p.add_argument("--teacher-init", choices=INITS, default="imagenet",
                   help="imagenet (transfer), scratch (random), scratch-bn (random, VGG16 with batch norm)")
    p.add_argument("--teacher-weights", help="state dict of torchvision VGG16 (or its features) to start from")
    p.add_argument("--teacher-epochs", type=number(BOUNDS["teacher_epochs"]), default=8)
    p.add_argument("--teacher-input-size", type=number(BOUNDS["teacher_input_size"]), default=128)
    p.add_argument("--teacher-freeze", type=number(BOUNDS["teacher_freeze"]), default=0,
                   help="freeze the lowest N VGG16 conv blocks")
    if cache:
        p.add_argument("--cache", help="teacher cache folder (default: $DEFECT_NAS_CACHE or ~/.cache/defect-nas)")


def runtime_from(args: argparse.Namespace) -> Runtime:
    """This process's runtime from ``--threads`` (and ``--precision`` where the command has it), applied."""
    return Runtime(device=args.device, threads=args.threads, precision=getattr(args, "precision", "auto")).apply()


def load_data(args: argparse.Namespace):
    dataset = load_dataset(args.dataset)
    warn_about(dataset)
    return dataset, make_split(dataset, seed=args.split_seed)


def warn_about(dataset) -> None:
    """What is odd about the data but does not stop the command, as a warning line on stderr."""
    from defect_nas.data.checks import label_conflicts

    if problem := label_conflicts(dataset):
        print(f"defect-nas: warning: {problem}", file=sys.stderr)


def teacher_config_from(args: argparse.Namespace) -> TeacherConfig | None:
    return teacher_config(args.teacher, init=args.teacher_init, weights_file=args.teacher_weights,
                          epochs=args.teacher_epochs, input_size=args.teacher_input_size,
                          freeze_blocks=args.teacher_freeze)


def log_line(quiet: bool):
    return (lambda msg: console.print(msg, style="dim", highlight=False)) if not quiet else (lambda msg: None)


def cmd_datasets(args: argparse.Namespace) -> None:
    if args.action == "import":
        if args.name != "neu" or not args.path:
            raise DefectNasError("usage: defect-nas datasets import neu PATH (a NEU-CLS folder or .zip)")
        dest = import_neu(Path(args.path), resolve_data_root(None))
        console.print(f"imported NEU into {dest}")
        return
    rows = list_datasets(None)
    if args.json:
        print_json(rows)
        return
    table = Table(title=f"datasets under {os.environ.get('DEFECT_NAS_DATA', '$DEFECT_NAS_DATA (unset)')}")
    for col in ("name", "layout", "images", "classes", "path"):
        table.add_column(col)
    for r in rows:
        classes = r.get("classes") or {}
        table.add_row(r["name"], str(r.get("layout")), str(r.get("images", "")),
                      ", ".join(f"{k} {v}" for k, v in classes.items()) or r.get("error", ""), str(r["path"]))
    console.print(table)


def cmd_teacher(args: argparse.Namespace) -> None:
    runtime = runtime_from(args)
    cfg = teacher_config_from(args)
    if cfg is None:
        raise DefectNasError("--teacher none: nothing to train")
    dataset, split = load_data(args)
    t = ensure_teacher(dataset, split, cfg, args.cache, log=log_line(args.json), runtime=runtime)
    out = {"teacher": cfg.arch, "provenance": t.provenance, "test_accuracy": t.test_accuracy,
           "val_accuracy": t.val_accuracy, "train_seconds": t.seconds, "from_cache": t.from_cache,
           "cache_dir": str(t.cache_dir), "config": cfg.to_dict()}
    if args.json:
        print_json(out)
        return
    console.print(f"[bold]{cfg.arch}[/] teacher ({t.provenance}): test accuracy [bold]{t.test_accuracy:.2f}%[/],"
                  f" val {t.val_accuracy:.2f}%, trained in {t.seconds / 60:.1f} min"
                  f"{' (loaded from cache)' if t.from_cache else ''}; {t.cache_dir}")


def resolve_arch(text: str, task: Task) -> ArchSpec:
    if text.startswith("prototype:"):
        space_name, _, proto = text[len("prototype:"):].partition("/")
        protos = get_space(space_name).prototypes(task)
        if proto not in protos:
            raise DefectNasError(f"--arch {text}: {space_name} has prototypes {', '.join(protos)}")
        return protos[proto]
    return load_spec(text)


def cmd_train(args: argparse.Namespace) -> None:
    from defect_nas.cli.segment import cmd_train_segment, wants_segmentation
    from defect_nas.evaluators.run import train_spec, write_run

    if wants_segmentation(args):
        return cmd_train_segment(args)

    runtime = runtime_from(args)
    tcfg = TrainConfig(epochs=args.epochs, input_size=args.input_size, batch_size=args.batch_size,
                       optimizer=args.optimizer, lr=args.lr, kd=kd_for(args.teacher, args.kd),
                       kd_alpha=args.kd_alpha, crop_scale=args.crop_scale, class_weights=args.class_weights,
                       sampler=args.sampler, patience=args.patience, ema_epochs=args.ema_epochs or None,
                       seed=args.seed)
    dataset, split = load_data(args)
    writable_folder(args.results, "--results")  # before the training, not after it
    size = args.input_size or dataset.images.shape[-1]
    spec = resolve_arch(args.arch, Task(dataset.images.shape[1], size, len(dataset.class_names)))
    if spec.num_classes != len(dataset.class_names):
        raise DefectNasError(f"--arch has {spec.num_classes} classes but {args.dataset} has {len(dataset.class_names)}")
    if args.budget_flops:
        spec = fit(spec, Budget(args.budget_flops))
    log = log_line(args.json)
    teacher, dropped = None, None
    if (cfg := teacher_config_from(args)) is not None:
        trained = ensure_teacher(dataset, split, cfg, args.cache, log=log, runtime=runtime)
        log(f"teacher: {trained.provenance}, test accuracy {trained.test_accuracy:.2f}%")
        teacher, dropped = usable_teacher(trained, dataset, split, log)
        if dropped:  # the student trains without distillation, as the warning says (it used to exit 2 here)
            tcfg = replace(tcfg, kd="none")
    with epoch_progress(args.epochs, spec.name or "train", args.json) as on_epoch:
        result = train_spec(spec, dataset, split, tcfg, teacher, latency=not args.no_latency, runtime=runtime,
                            on_epoch=on_epoch)
    config = {
        "command": "train",
        "arch": args.arch,
        "dataset": args.dataset,
        "dataset_fingerprint": dataset.fingerprint,
        "split_seed": args.split_seed,
        "train": tcfg.to_dict(),
        "runtime": runtime.to_dict(),
        "teacher": cfg.to_dict() if cfg else None,
        "teacher_dropped": dropped,
        "budget_flops": args.budget_flops,
    }
    run = write_run(
        result, args.results, f"train-{spec.name or 'arch'}-s{args.seed}", dataset, split, config, args.seed
    )
    s = result.summary
    if args.json:
        print_json({**{k: v for k, v in s.items() if k not in ("history", "latency")}, "run_dir": str(run)})
        return
    table = Table(title=f"{spec.name or args.arch} on {dataset.name} ({len(split.test)} test images)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("test accuracy", f"{s['test_accuracy']:.2f}%")
    table.add_row("balanced accuracy / macro-F1",
                  f"{s['test_metrics']['balanced_accuracy']:.2f}% / {s['test_metrics']['macro_f1']:.2f}%")
    for name, acc in zip(dataset.class_names, s["test_metrics"]["per_class_accuracy"]):
        table.add_row(f"  {name}", "n/a" if acc is None else f"{acc:.2f}%")
    table.add_row("val accuracy (best epoch)", f"{s['val_accuracy']:.2f}% (epoch {s['best_epoch']})")
    table.add_row("MACs / 2xMACs", f"{millions(s['macs'])} / {millions(2 * s['macs'])}")
    table.add_row("params", f"{s['params']:,}")
    table.add_row("NetScore", f"{s['netscore']:.2f} dB")
    if "latency_ms" in s:
        table.add_row("latency (batch 1, eager)", f"{s['latency_ms']:.2f} ms")
        table.add_row("throughput (batch 32)", f"{s['throughput_img_s']:.0f} img/s")
    table.add_row("training", f"{s['train_seconds']:.0f} s, {s['train_images_per_second']:.0f} img/s, {s['precision']}")
    table.add_row("teacher", str(s["teacher"] or "none"))
    console.print(table)
    console.print(f"run folder: {run}")
