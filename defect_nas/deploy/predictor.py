"""A model folder ready to classify image files: the one path ``predict``, ``explain`` and the model
card's snippet share, so a file gives the model what training gave it (``data.preprocess``) and a
line PC needs only this room (``deploy`` imports neither the search nor the trainer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from defect_nas.data.preprocess import model_input, read_for_model
from defect_nas.deploy.model import load_model

__all__ = ["Prediction", "Predictor"]


@dataclass(frozen=True)
class Prediction:
    path: str
    label: str
    probability: float


class Predictor:
    """What ``predict`` runs: the int8 ONNX model when the folder was exported with ``--format
    onnx-int8`` (that export is what gets deployed; predict once ran the fp32 weights beside it), else
    the fp32 weights in PyTorch. ``model`` is always the fp32 network (``explain`` attributes it)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.model, self.spec, self.labels = load_model(self.folder)  # also checks the folder whole
        int8 = self.folder / "model.int8.onnx"
        self._session = None
        if int8.is_file():
            from defect_nas.deploy.onnx import ort_session

            self._session = ort_session(int8)
            self.ran = {"runtime": "onnxruntime", "precision": "int8", "file": int8.name}
        else:
            self.ran = {"runtime": "pytorch", "precision": "fp32", "file": "weights.safetensors"}

    def read(self, paths: list[str] | tuple[str, ...]) -> torch.Tensor:
        """uint8 [N, C, H, W] of image files, decoded and sized as training saw its data."""
        return torch.cat([read_for_model(p, self.spec.in_channels, self.spec.input_size) for p in paths])

    def probabilities(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, classes] of uint8 model-size pixels."""
        x = model_input(x_uint8)
        if self._session is not None:
            from defect_nas.deploy.onnx import INPUT_NAME

            logits = self._session.run(None, {INPUT_NAME: np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]
            return torch.softmax(torch.from_numpy(logits), 1)
        with torch.no_grad():
            return torch.softmax(self.model(x), 1)

    def predict(self, paths: list[str] | tuple[str, ...]) -> list[Prediction]:
        """The most probable class of each image file (one file at a time: a line PC sees one part)."""
        out = []
        for p in paths:
            prob = self.probabilities(self.read([p]))[0]
            k = int(prob.argmax())
            out.append(Prediction(str(p), self.labels[k], float(prob[k])))
        return out
