"""What a model folder holds and how its small files are read, without torch: the stand-alone
predictor and the PyTorch loader (``deploy.model``) check a folder the same way."""

from __future__ import annotations

import json
from pathlib import Path

from defect_nas.core.errors import DefectNasError
from defect_nas.core.spec import ArchSpec, load_spec


def read_spec(folder: Path) -> ArchSpec:
    """arch.json of a model folder (its input size and channels: what images are sized to)."""
    if not (folder / "arch.json").is_file():
        raise DefectNasError(f"{folder}: not a model folder (needs arch.json, labels.json and model.onnx or "
                             "weights.safetensors)")
    return load_spec(str(folder / "arch.json"))


def read_labels(path: Path, classes: int) -> tuple[str, ...]:
    """The class names, in output order: a prediction without them would name no defect."""
    if not path.is_file():
        raise DefectNasError(f"{path}: missing; write the {classes} class names as a JSON list in output order,"
                             " or export the model again (defect-nas export RUN)")
    try:
        names = json.loads(path.read_text())
    except ValueError:
        names = None
    if not (isinstance(names, list) and len(names) == classes and all(isinstance(n, str) for n in names)):
        raise DefectNasError(f"{path}: must be a JSON list of the model's {classes} class names")
    return tuple(names)
