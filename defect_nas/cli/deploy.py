"""Deployment commands on an exported model folder: ``export``, ``predict``, ``benchmark``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from defect_nas.cli.evaluate import add_device_arg
from defect_nas.cli.numbers import int_in, non_negative_int, threads_int
from defect_nas.cli.output import console, millions, print_json
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder, write_text_atomic
from defect_nas.core.runfolder import RunFolder

MAX_BATCH = 1024  # throughput saturates long before; 10^8 asked for a 409 GB allocation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the winner (or a trial) of a run")
    p.add_argument("run")
    p.add_argument("--trial", type=non_negative_int, help="export this trial's weights instead of the winner")
    p.add_argument("--format", action="append",
                   help="repeatable, of onnx, onnx-int8, openvino, openvino-int8, torchscript, safetensors; "
                        "default: safetensors and onnx. openvino: model.xml in fp32 ('defect-nas[openvino]'); "
                        "openvino-int8: NNCF post-training quantization, kept only within 0.3 points of fp32 on the "
                        "test split. onnx-int8: ONNX Runtime static quantization "
                        "calibrated on the run's training images, its test accuracy checked against fp32")
    p.add_argument("--out", help="output folder (default: RUN/export-<trial|winner>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="latency/throughput of a model vs ResNet-50, eager and ONNX Runtime")
    p.add_argument("model")
    p.add_argument("--threads", type=threads_int, help="torch and ORT threads (default: all cores)")
    p.add_argument("--repeats", type=int_in(1, 10_000), default=30)
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), default=64,
                   help=f"batch size of the throughput measurement (1..{MAX_BATCH})")
    p.add_argument("--runtimes", default="installed",
                   help="comma-separated, of eager, onnx, openvino, zentorch; default: eager, onnx and whichever of "
                        "openvino (pip install 'defect-nas[openvino]') and zentorch ('[zentorch]', AMD) is installed")
    p.add_argument("--out", help="also write the rows and the environment to this JSON file")
    add_device_arg(p, default="cpu", what="measure besides the CPU (cuda or cuda:N adds GPU rows, fp32 and bf16)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_benchmark)


def cmd_export(args: argparse.Namespace) -> None:
    from safetensors.torch import load_file

    from defect_nas.core.spec import ArchSpec
    from defect_nas.deploy.model import FORMATS, load_model, run_images, save_model
    from defect_nas.search_spaces.build import build

    run_dir = Path(args.run)
    if (run_dir / "arch.json").is_file() and not RunFolder(run_dir).config.is_file():
        raise DefectNasError(f"{run_dir} is a model folder; export takes the run folder that holds it "
                             f"(e.g. {run_dir.parent})")
    formats = tuple(args.format or ("safetensors", "onnx"))
    if args.trial is None:
        model, spec, labels = load_model(RunFolder(run_dir).winner)
        out = Path(args.out or run_dir / "export-winner")
    else:
        weights = RunFolder(run_dir).trial_weights(args.trial)
        if not weights.is_file():
            raise DefectNasError(f"{weights}: trial {args.trial} has no saved weights (pruned, failed or unknown)")
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            meta = f.metadata()
        spec = ArchSpec.from_json(meta["arch"])
        size = int(meta.get("input_size", spec.input_size))
        spec = spec.at_size(size)
        model = build(spec)
        model.load_state_dict(load_file(weights))
        split = json.loads(RunFolder(run_dir).split.read_text()) if RunFolder(run_dir).split.is_file() else {}
        labels = tuple(split.get("class_names") or (split.get("counts") or {}).get("train")  # a segmentation run's
                       or (f"class{i}" for i in range(spec.num_classes)))  # split.json names its classes
        out = Path(args.out or run_dir / f"export-trial-{args.trial}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise DefectNasError(f"--format {bad[0]!r}: choose from {', '.join(FORMATS)}")
    writable_folder(out, "--out")
    for fmt, files in STALE.items():
        if fmt not in formats:  # an earlier export's, not this model's
            for stale in files:
                (out / stale).unlink(missing_ok=True)
    checked = RunFolder(run_dir).has_split() and set(formats) & {"onnx-int8", "openvino", "openvino-int8"}
    if spec.segments:  # masks have no OK/NG threshold; int8 is checked on mIoU
        from defect_nas.cli.segment import export_segmenter

        written = export_segmenter(run_dir, model, spec, labels, formats, out)
    elif not checked:
        written = save_model(model, spec, labels, out, formats)
    else:
        x_cal, x_test, y_test = run_images(run_dir, spec, labels)
        written = save_model(model, spec, labels, out, formats, calibration=x_cal)
        written += check_runtimes(out, formats, x_test, y_test, len(x_cal))
    if RunFolder(run_dir).has_split() and not spec.segments:  # the OK/NG threshold of what was exported, as predict
        # runs it
        from defect_nas.data.preprocess import recorded_part, recorded_test
        from defect_nas.deploy.operating_point import measure

        test = recorded_test(run_dir, spec.input_size, labels)
        measure(out, recorded_part(test.dataset, test.split, spec.input_size, labels, "val"), test)
        written.append(out / "operating_point.json")
    for p in written:
        if p.exists():  # an int8 model that was not kept is gone
            console.print(f"wrote {p}")


STALE = {"onnx-int8": ("model.int8.onnx", "int8_check.json"),
         "openvino": ("model.xml", "model.bin", "openvino_check.json"),
         "openvino-int8": ("model.int8.xml", "model.int8.bin", "openvino_int8_check.json")}
OPENVINO_INT8_MAX_DROP = 0.3  # points of test accuracy an int8 OpenVINO model may lose, or it is not kept


def check_runtimes(out: Path, formats: tuple[str, ...], x_test, y_test, calibration: int) -> list[Path]:
    """Each exported runtime's test accuracy against fp32 ONNX Runtime's, in a JSON file beside it;
    an OpenVINO int8 model that loses more than 0.3 points is removed (said in one line)."""
    from defect_nas.deploy.runtimes import predictions

    ref = predictions(out / "model.onnx", x_test)
    fp32 = 100 * float((ref == y_test).mean())
    written = []
    for fmt, (file, runtime, what) in {
        "onnx-int8": ("model.int8.onnx", "onnxruntime", "ONNX Runtime (CPUExecutionProvider), static QDQ, U8S8, "
                                                        "per-channel weights"),
        "openvino": ("model.xml", "openvino", "OpenVINO CPU plugin, fp32 (converted from model.onnx)"),
        "openvino-int8": ("model.int8.xml", "openvino", "OpenVINO CPU plugin, NNCF post-training quantization"),
    }.items():
        if fmt not in formats:
            continue
        pred = predictions(out / file, x_test, runtime)
        acc = 100 * float((pred == y_test).mean())
        check = {"test_images": len(y_test), "fp32_onnxruntime_accuracy": fp32, "accuracy": acc,
                 "minus_fp32_points": acc - fp32, "labels_equal_to_onnxruntime": int((pred == ref).sum()),
                 "runtime": what, **({"calibration_images": calibration} if "int8" in fmt else {})}
        if fmt == "onnx-int8":  # the names the int8 check has always had
            check.update(fp32_accuracy=fp32, int8_accuracy=acc, int8_minus_fp32_points=acc - fp32)
        name = STALE[fmt][-1]
        written.append(write_text_atomic(out / name, json.dumps(check, indent=2) + "\n"))
        console.print(f"{fmt} on the recorded test split ({len(y_test)} images): {acc:.2f}% vs fp32 ONNX Runtime "
                      f"{fp32:.2f}% ({acc - fp32:+.2f} points; {check['labels_equal_to_onnxruntime']} labels equal)")
        if fmt == "openvino-int8" and acc < fp32 - OPENVINO_INT8_MAX_DROP:
            for f in STALE[fmt][:2]:
                (out / f).unlink(missing_ok=True)
            console.print(f"not kept: OpenVINO int8 loses more than {OPENVINO_INT8_MAX_DROP} points; deploy model.xml "
                          "(fp32) or ONNX Runtime's int8", style="yellow")
    return written


def runtimes_to_measure(spec: str) -> list[str]:
    """``--runtimes``: the CPU runtimes to time; one not installed, or unknown, is one line."""
    import importlib.util

    from defect_nas.measure.latency import BACKENDS

    if spec == "installed":
        return ["eager", "onnx", *(b for b in ("openvino", "zentorch") if importlib.util.find_spec(b))]
    chosen = [b.strip() for b in spec.split(",") if b.strip()]
    for b in chosen:
        if b not in BACKENDS:
            raise DefectNasError(f"--runtimes {b!r}: choose from {', '.join(BACKENDS)}")
        if b in ("openvino", "zentorch") and not importlib.util.find_spec(b):
            raise DefectNasError(f"--runtimes {b}: not installed; pip install 'defect-nas[{b}]'")
    if "onnx" not in chosen:  # every speed-up is also given against ResNet-50 in ONNX Runtime
        chosen.append("onnx")
    return chosen


def cmd_benchmark(args: argparse.Namespace) -> None:
    from defect_nas.core.cost import cost
    from defect_nas.deploy.model import load_model
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.measure.flops import fvcore_macs
    from defect_nas.measure.latency import measure_latency, measure_onnx_file
    from defect_nas.nas.baselines import baseline_model

    gpu = Runtime(device=args.device)  # a GPU asked for but absent: one line, before any measuring
    backends = runtimes_to_measure(args.runtimes)
    model, spec, labels = load_model(args.model)
    if args.out:  # before the measuring, not after it
        writable_folder(Path(args.out).parent, "--out")
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    resnet = baseline_model("resnet50", spec.in_channels, len(labels)).eval()
    rows = []
    models = (("model", model, cost(spec).macs),
              ("resnet50", resnet, fvcore_macs(resnet, spec.in_channels, spec.input_size)))
    for name, m, macs in models:
        for backend in backends:
            r = measure_latency(m, shape, backend=backend, batch_size_throughput=args.batch, repeats=args.repeats,
                                threads=args.threads)
            rows.append({"model": name, "backend": backend, "macs": macs, "latency_ms": r.latency_ms,
                         "throughput_img_s": r.throughput_img_s, "threads": r.threads, "cpu": r.cpu_model})
    int8 = Path(args.model) / "model.int8.onnx"
    if int8.is_file():  # written by `export --format onnx-int8`
        r = measure_onnx_file(int8, shape, batch_size_throughput=args.batch, repeats=args.repeats, threads=args.threads)
        rows.append({"model": "model", "backend": "onnx-int8", "macs": models[0][2], "latency_ms": r.latency_ms,
                     "throughput_img_s": r.throughput_img_s, "threads": r.threads, "cpu": r.cpu_model})
    if gpu.is_cuda:  # the deployment target (CPU) always; the GPU side by side when asked
        from defect_nas.measure.gpu_timing import measure_gpu

        for name, m, macs in models:
            for precision in ("fp32", "bf16"):
                g = measure_gpu(m, shape, str(gpu.torch_device), precision, args.batch, args.repeats)
                rows.append({"model": name, "backend": f"cuda-{precision}", "macs": macs, "latency_ms": g.latency_ms,
                             "throughput_img_s": g.throughput_img_s, "threads": None, "cpu": g.gpu})
    for backend in sorted({r["backend"] for r in rows}):
        mine = next(r for r in rows if r["model"] == "model" and r["backend"] == backend)
        ref = next(r for r in rows if r["model"] == "resnet50" and r["backend"] == backend.replace("-int8", ""))
        mine["speedup_latency_vs_resnet50"] = ref["latency_ms"] / mine["latency_ms"]
        mine["speedup_throughput_vs_resnet50"] = mine["throughput_img_s"] / ref["throughput_img_s"]
        ort = next((r for r in rows if r["model"] == "resnet50" and r["backend"] == "onnx"), None)
        if ort and not backend.startswith("cuda"):  # the same ResNet-50 everywhere: ONNX Runtime's
            mine["speedup_throughput_vs_resnet50_onnx"] = mine["throughput_img_s"] / ort["throughput_img_s"]
    if args.out:
        from defect_nas.measure.runinfo import environment

        doc = {"model": args.model, "input": list(shape), "batch": args.batch, "repeats": args.repeats,
               "rows": rows, "environment": environment()}
        write_text_atomic(args.out, json.dumps(doc, indent=2) + "\n")
    if args.json:
        print_json(rows)
        return
    shape = f"{spec.input_size}x{spec.input_size}x{spec.in_channels}"
    versus = "ResNet-50 (a classifier, for scale)" if spec.segments else "ResNet-50"
    table = Table(title=f"{args.model} vs {versus} at {shape} ({rows[0]['cpu']}, {rows[0]['threads']} threads)")
    for col in ("model", "backend", "MACs", "batch-1 ms", f"img/s (batch {args.batch})", "speed-up vs ResNet-50"):
        table.add_column(col)
    for r in rows:
        sp = r.get("speedup_throughput_vs_resnet50")
        table.add_row(
            r["model"],
            r["backend"],
            millions(r["macs"]),
            f"{r['latency_ms']:.2f}",
            f"{r['throughput_img_s']:.0f}",
            f"{sp:.1f}x throughput, {r['speedup_latency_vs_resnet50']:.1f}x latency" if sp else "",
        )
    console.print(table)
