"""Export a trained architecture ready to deploy, and load it back without pickle.

A model folder holds ``arch.json`` (the ArchSpec), ``weights.safetensors``, ``labels.json``
(class names), ``model.onnx`` (checked against PyTorch with ONNX Runtime), optionally
``model.torchscript.pt``, and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import write_text_atomic
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.spec import ArchSpec
from defect_nas.deploy.folder import read_labels, read_spec
from defect_nas.deploy.onnx import export_onnx
from defect_nas.search_spaces.build import build

FORMATS = ("safetensors", "onnx", "onnx-int8", "openvino", "openvino-int8", "torchscript")
INT8_FORMATS = ("onnx-int8", "openvino-int8")


def save_model(model: torch.nn.Module, spec: ArchSpec, class_names: tuple[str, ...], out: Path,
               formats: tuple[str, ...] = ("safetensors", "onnx"), calibration: np.ndarray | None = None) -> list[Path]:
    """Write the model folder; arch.json, labels.json and weights always, ONNX / OpenVINO / TorchScript on
    request. ``onnx-int8`` (model.int8.onnx, beside the fp32 model.onnx it is made from) and
    ``openvino-int8`` (model.int8.xml, NNCF) need ``calibration``: preprocessed training images."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise DefectNasError(f"--format {bad[0]!r}: choose from {', '.join(FORMATS)}")
    int8 = [f for f in formats if f in INT8_FORMATS]
    if int8 and calibration is None:
        raise DefectNasError(f"--format {int8[0]} needs calibration images: export it from a run folder")
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    write_text_atomic(out / "arch.json", spec.to_json() + "\n")  # a full disk: one line naming the file
    write_text_atomic(out / "labels.json", json.dumps(list(class_names)) + "\n")
    written = [out / "arch.json", out / "labels.json"]
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "weights.safetensors",
              metadata={"arch": spec.to_json(indent=None), "labels": json.dumps(list(class_names))})
    written.append(out / "weights.safetensors")
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    if set(formats) & {"onnx", "onnx-int8", "openvino", "openvino-int8"}:  # OpenVINO converts the checked ONNX
        written.append(export_onnx(model, shape, out / "model.onnx"))
    if "onnx-int8" in formats:
        from defect_nas.deploy.quantize import quantize_int8

        written.append(quantize_int8(out / "model.onnx", calibration, out / "model.int8.onnx"))
    if "openvino" in formats or "openvino-int8" in formats:
        from defect_nas.deploy.openvino import export_openvino, quantize_openvino

        written.append(export_openvino(out / "model.onnx", out / "model.xml"))
        if "openvino-int8" in formats:
            written.append(quantize_openvino(out / "model.xml", calibration, out / "model.int8.xml"))
    if "torchscript" in formats:
        traced = torch.jit.trace(model, torch.rand(1, *shape))
        traced.save(str(out / "model.torchscript.pt"))
        written.append(out / "model.torchscript.pt")
    return written


def load_model(folder: str | Path) -> tuple[torch.nn.Module, ArchSpec, tuple[str, ...]]:
    """Rebuild a saved model from arch.json + weights.safetensors (no pickle involved)."""
    folder = Path(folder)
    spec = read_spec(folder)
    if not (folder / "weights.safetensors").is_file():
        raise DefectNasError(f"{folder}: not a model folder with weights (needs weights.safetensors)")
    names = read_labels(folder / "labels.json", spec.num_classes)
    model = build(spec)
    try:
        model.load_state_dict(load_file(folder / "weights.safetensors"))
    except Exception as e:
        raise DefectNasError(
            f"{folder / 'weights.safetensors'}: does not fit arch.json ({e.__class__.__name__})"
        ) from None
    return model.eval(), spec, names


def model_card(name: str, spec: ArchSpec, summary: dict, data: dict) -> str:
    """MODEL_CARD.md: data, split, metrics, cost, latency, and how to load the model."""
    acc = summary.get("test_accuracy_mean")
    std = summary.get("test_accuracy_std", 0.0)
    per_class = summary.get("per_class_accuracy") or {}
    lines = [
        f"# {name}",
        "",
        f"Designed by defect-nas ({summary.get('strategy', 'search')} over {summary.get('spaces', spec.name)}) under "
        f"a budget of {summary.get('budget', '')}.",
        "",
        "## Data",
        "",
        f"- dataset: `{data.get('name')}` (fingerprint `{data.get('fingerprint', '')[:16]}`), classes: "
        + ", ".join(f"`{c}`" for c in data.get("class_names", [])),
        f"- split (seed {data.get('split_seed')}): {data.get('sizes')}; file lists in `../split.json`",
        "",
        "## Metrics (test set, never used for selection)",
        "",
        f"**Warning:** {summary['warning']}." if summary.get("warning") else "",
        f"- {summary.get('metric', 'accuracy').replace('_', ' ')}: **{acc:.2f}% +- {std:.2f}** over "
        f"{summary.get('seeds')} training seeds"
        if acc is not None
        else "",
        f"- trained: {summary['fidelity']}" if summary.get("fidelity") else "",
        f"- validation accuracy: {summary.get('val_accuracy_mean', float('nan')):.2f}%; per class below: the "
        "exported seed (the best validation accuracy, ties to the lower validation loss)",
        f"- NetScore: {summary.get('netscore', float('nan')):.2f} dB ({summary.get('netscore_definition', '')})",
        "",
        "| class | accuracy |",
        "| --- | --- |",
        *[f"| {k} | {v:.2f}% |" if v is not None else f"| {k} | n/a |" for k, v in per_class.items()],
        "",
        "## Cost",
        "",
        f"- MACs: {summary.get('macs'):,} (2 x MACs: {2 * summary.get('macs', 0):,})"
        f" at {spec.input_size}x{spec.input_size}x{spec.in_channels}",
        f"- parameters: {summary.get('params'):,}",
        f"- latency (batch 1, fp32): {summary.get('latency_ms', float('nan')):.2f} ms eager PyTorch, "
        f"{summary.get('latency_onnx_ms', float('nan')):.2f} ms ONNX Runtime, on {summary.get('cpu', 'this CPU')} "
        f"with {summary.get('threads', '?')} thread(s) (int8: `defect-nas export RUN --format onnx-int8`, then "
        "`defect-nas benchmark` on that folder)",
        "",
        "## How to use it",
        "",
        f"Input: float32 `[N, {spec.in_channels}, {spec.input_size}, {spec.input_size}]`, pixel values / 255 "
        "(grayscale as one channel; 16-bit images reduced to their high byte; other sizes scaled axis by axis "
        "to the input, nothing cropped, as in training). Output: one logit per class in `labels.json` order, "
        "computed in fp32 (the recorded metrics were scored in fp32 too).",
        "",
        "```python",
        "from defect_nas.deploy.predictor import Predictor  # numpy, Pillow, ONNX Runtime: no torch, no search",
        "predictor = Predictor('winner')  # what `defect-nas predict` and `serve` run",
        "for p in predictor.predict(['IMAGE.png']):  # decoded and sized as in training",
        "    print(p.label, p.probability, p.decision)  # decision: OK/NG at the operating point below",
        "```",
        "",
        "```python",
        "import onnxruntime as ort, numpy as np  # without defect-nas",
        "session = ort.InferenceSession('winner/model.onnx')",
        f"x = np.zeros((1, {spec.in_channels}, {spec.input_size}, {spec.input_size}), np.float32)",
        "logits = session.run(None, {'input': x})[0]",
        "```",
        "",
        "Or from the command line: `defect-nas predict RUN/winner IMAGE...`.",
        "",
    ]
    return "\n".join(lines)


CALIBRATION_IMAGES = 256  # ONNX Runtime's MinMax ranges settle well before this on NEU (not measured beyond)


def run_images(run_dir: Path, spec: ArchSpec, labels: tuple[str, ...],
               calibration: int = CALIBRATION_IMAGES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's training images to calibrate on and its recorded test split to check on, as model inputs
    (the preprocessing of training and ``predict``)."""
    from defect_nas.data.preprocess import model_input, recorded_test, resize_uint8

    if not RunFolder(run_dir).has_split():
        raise DefectNasError(f"{run_dir}: --format onnx-int8 needs a run folder (config.json and split.json: the "
                             "training images to calibrate on and the test split to check on)")
    rec = recorded_test(run_dir, spec.input_size, labels)
    train = np.random.default_rng(0).permutation(np.asarray(rec.split.train))[:calibration]  # every class
    x_cal = model_input(resize_uint8(rec.dataset.images[train.tolist()], spec.input_size)).numpy()
    return x_cal, model_input(rec.x8).numpy(), rec.truth.numpy()
