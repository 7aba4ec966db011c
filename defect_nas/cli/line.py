"""Commands for the line: ``predict`` (files or folders, OK/NG at the operating point), ``operating-point``
(choose it on a run's validation split, measure it on test) and ``serve`` (an HTTP service)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from defect_nas.cli.numbers import finite_float, int_in, threads_int
from defect_nas.cli.output import console, print_json
from defect_nas.core.errors import DataError, DefectNasError
from defect_nas.core.files import writable_folder, write_text_atomic
from defect_nas.core.runfolder import RunFolder

RUNTIME_CHOICES = ("onnxruntime", "openvino")
rate = finite_float(0, 1)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images (files or folders, recursively) with an exported model")
    p.add_argument("model", help="a model folder, e.g. results/neu-100m/winner")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_runtime_args(p)
    p.add_argument("--csv", help="also write path, class, probability, decision to this CSV file")
    p.add_argument("--out", help="a segmentation model's outputs: OUT/masks/<stem>.png (class indices) and "
                                 "OUT/overlays/<stem>.png (default: predictions/ here)")
    p.add_argument("--truth", help="a segmentation model: the folder of the true masks (<stem>.png) to score "
                                   "the predicted ones against (mIoU, IoU per class)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("operating-point", help="choose the OK/NG threshold on a run's validation split for an "
                                               "escape rate, and measure it on the test split")
    p.add_argument("run", help="a run folder (its winner/ gets operating_point.json and a model card section)")
    p.add_argument("--max-escape-rate", type=rate, default=0.0,
                   help="the share of validation defects allowed to pass as OK, 0..1 (default 0: every one caught)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operating_point)

    p = sub.add_parser("serve", help="an HTTP service for the line: POST /predict an image, GET /health")
    p.add_argument("model", help="a model folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int_in(0, 65535), default=8000)
    add_runtime_args(p)
    p.set_defaults(func=cmd_serve)


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default="onnxruntime",
                   help="what runs the model (openvino: pip install 'defect-nas[openvino]')")
    p.add_argument("--threads", type=threads_int, help="runtime threads (default: the runtime's own)")
    p.add_argument("--threshold", type=rate, help="OK/NG threshold (0..1) instead of the stored operating point")
    p.add_argument("--max-escape-rate", type=rate, help="choose the threshold again from the stored validation "
                                                         "scores for this escape rate (0..1)")


def predictor_of(args: argparse.Namespace):
    """The stand-alone predictor with the operating point the flags ask for."""
    from defect_nas.deploy.predictor import Predictor

    predictor = Predictor(args.model, runtime=args.runtime, threads=args.threads)
    if args.threshold is not None or args.max_escape_rate is not None:
        op = predictor.operating_point
        if op is None:
            raise DefectNasError(f"{args.model}: no operating_point.json to override; write one with "
                                 "`defect-nas operating-point RUN`")
        if args.threshold is not None and args.max_escape_rate is not None:
            raise DefectNasError("--threshold and --max-escape-rate both set a threshold: give one")
        predictor.operating_point = (op.with_threshold(args.threshold) if args.threshold is not None
                                     else op.with_escape_rate(args.max_escape_rate))
    return predictor


def image_files(items: list[str]) -> list[Path]:
    """The files named, and the images below each folder named; a path that does not exist is one line."""
    from defect_nas.data.files import images_in

    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += images_in(path, recursive=True)
        elif path.is_file():
            out.append(path)
        else:
            raise DefectNasError(f"{item}: no such image or folder")
    return out


def cmd_predict(args: argparse.Namespace) -> None:
    predictor = predictor_of(args)
    files = image_files(args.images)
    if predictor.spec.segments:
        from defect_nas.cli.segment import predict_segment

        return predict_segment(args, predictor, files)
    if args.out or args.truth:
        raise DefectNasError("--out and --truth are for segmentation models; a classifier writes --csv")
    if args.csv:  # an unwritable place fails before the work; an existing file is replaced only at the end
        writable_folder(Path(args.csv).resolve().parent, "--csv")
    rows, skipped = [], []
    for f in files:
        try:
            x = predictor.read(f)
        except DataError as e:  # one bad image on a line is reported, not the end of the batch
            skipped.append(str(f))
            print(f"skipped {e}", file=sys.stderr)
            continue
        p = predictor.classify(x, [str(f)])[0]
        rows.append({"path": p.path, "label": p.label, "probability": p.probability, "decision": p.decision,
                     **predictor.ran})
    if not rows:
        raise DefectNasError(f"no readable image among {len(files)} file(s): give image files or folders of them")
    if args.csv:
        _write_csv(Path(args.csv), rows)
    decided = [r["decision"] for r in rows]
    summary = (f"{len(rows)} image(s) classified" + (f": {decided.count('OK')} OK, {decided.count('NG')} NG"
                                                     if predictor.operating_point else " (no operating point)")
               + (f"; {len(skipped)} unreadable, skipped" if skipped else ""))
    if args.json:
        print_json(rows)
        print(summary, file=sys.stderr)
        return
    for r in rows:
        decision = f" {r['decision']}" if r["decision"] else ""
        console.print(f"{r['path']}: [bold]{r['label']}[/] ({r['probability']:.3f}){decision}", highlight=False)
    ran = predictor.ran
    console.print(f"{summary}; ran {ran['file']}: {ran['runtime']}, {ran['precision']}", style="dim", highlight=False)


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["path", "label", "probability", "decision"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def cmd_operating_point(args: argparse.Namespace) -> None:
    from defect_nas.data.preprocess import recorded_part, recorded_test
    from defect_nas.deploy.folder import read_labels, read_spec
    from defect_nas.deploy.operating_point import format_rate, measure

    run_dir = Path(args.run)
    if not RunFolder(run_dir).winner.is_dir():
        raise DefectNasError(f"{run_dir}: not a run folder with a winner/ (give the folder defect-nas search wrote)")
    source = RunFolder(run_dir).split_source()
    model_dir = RunFolder(run_dir).winner
    spec = read_spec(model_dir)
    labels = read_labels(model_dir / "labels.json", spec.num_classes)
    test = recorded_test(source, spec.input_size, labels)
    val = recorded_part(test.dataset, test.split, spec.input_size, labels, "val")
    op = measure(model_dir, val, test, args.max_escape_rate)
    if args.json:
        print_json({k: v for k, v in json.loads(op.to_json()).items() if k != "validation_scores"})
        return
    for key, r in op.report["test"].items():
        console.print(f"P({key}) threshold {r['threshold']:.4g}: test escape rate {format_rate(r, 'escape')}, "
                      f"false-reject rate {format_rate(r, 'false_reject')}", highlight=False)
    console.print(f"wrote {model_dir / 'operating_point.json'} and its MODEL_CARD.md section", style="dim")


def cmd_serve(args: argparse.Namespace) -> None:
    predictor = predictor_of(args)  # a bad model folder or runtime is one line before the port opens
    from defect_nas.deploy.serve import run_server

    run_server(predictor, args.host, args.port)
