"""A model folder ready to classify image files on a line PC: numpy, Pillow and one runtime (ONNX
Runtime, or OpenVINO), nothing of the search, the trainer or torch (an import-linter contract and a
test that blocks those imports prove it). ``predict``, ``serve`` and the model card's snippet use it;
a file gives the model what training gave it (``data.imageio``: the training data's decoder and size
policy, pixels / 255)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defect_nas.core.errors import DefectNasError
from defect_nas.data.imageio import read_for_model
from defect_nas.deploy.decision import OperatingPoint, load_operating_point
from defect_nas.deploy.folder import read_labels, read_spec
from defect_nas.deploy.runtimes import RUNTIMES, logits_fn

__all__ = ["Prediction", "Predictor"]


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str
    probability: float
    decision: str | None  # "OK" / "NG" at the operating point; None when the folder has none
    probabilities: dict[str, float]


class Predictor:
    """What ``predict`` and ``serve`` run: ``model.int8.onnx`` when the folder was exported with
    ``--format onnx-int8`` (that export is what gets deployed), else ``model.onnx`` (checked against
    PyTorch at export); OpenVINO reads its own ``model.xml`` when ``export --format openvino`` wrote
    one. ``operating_point`` overrides the folder's stored one."""

    def __init__(self, folder: str | Path, runtime: str = "onnxruntime", threads: int | None = None,
                 operating_point: OperatingPoint | None = None):
        if runtime not in RUNTIMES:
            raise DefectNasError(f"--runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
        self.folder = Path(folder)
        self.spec = read_spec(self.folder)
        self.labels = read_labels(self.folder / "labels.json", self.spec.num_classes)
        self.operating_point = operating_point or load_operating_point(self.folder, self.labels)
        self.file = self._model_file(runtime)
        self._logits = logits_fn(self.file, runtime, threads)
        precision = "int8" if ".int8." in self.file.name else "fp32"
        self.ran = {"runtime": runtime, "precision": precision, "file": self.file.name}

    def _model_file(self, runtime: str) -> Path:
        names = ["model.int8.onnx", "model.onnx"]
        if runtime == "openvino":
            names = ["model.int8.xml", "model.xml", *names]
        for name in names:
            if (self.folder / name).is_file():
                return self.folder / name
        raise DefectNasError(f"{self.folder}: no model.onnx to run; export it: defect-nas export RUN --format onnx")

    def read(self, image: str | Path | bytes, name: str = "upload") -> np.ndarray:
        """uint8 [1, C, H, W] of one image file (or its bytes), as training saw its data."""
        return read_for_model(image if isinstance(image, bytes) else Path(image), self.spec.in_channels,
                              self.spec.input_size, name)

    def probabilities(self, x_uint8: np.ndarray) -> np.ndarray:
        """Class probabilities [N, classes] (float64) of uint8 model-size pixels."""
        logits = np.asarray(self._logits(x_uint8.astype(np.float32) / 255), dtype=np.float64)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def classify(self, x_uint8: np.ndarray, paths: list[str]) -> list[Prediction]:
        """Predictions of already-read pixels, with the decision at the operating point."""
        prob = self.probabilities(x_uint8)
        decisions = self.operating_point.decide(prob) if self.operating_point else [None] * len(prob)
        out = []
        for path, p, d in zip(paths, prob, decisions):
            k = int(p.argmax())
            out.append(Prediction(path, self.labels[k], float(p[k]), d,
                                  {name: float(v) for name, v in zip(self.labels, p)}))
        return out

    def masks(self, x_uint8: np.ndarray) -> np.ndarray:
        """A segmenter's class-index masks, uint8 [N, H, W] at the model's input size (per-pixel argmax)."""
        if not self.spec.segments:
            raise DefectNasError(f"{self.folder}: a classifier; masks need a segmentation model (--task segment)")
        return np.asarray(self._logits(x_uint8.astype(np.float32) / 255)).argmax(1).astype(np.uint8)

    def predict(self, paths: list[str] | tuple[str, ...]) -> list[Prediction]:
        """The most probable class of each image file (one file at a time: a line PC sees one part)."""
        return [self.classify(self.read(p), [str(p)])[0] for p in paths]
