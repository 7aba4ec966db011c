"""One image file -> the exported model's input: the one path ``predict`` and ``explain`` share.

So that a file gives the model what training gave it, and the explanation shows what the deployed
model saw: the training data's decoder and size policy, the same scaling to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from defect_nas.core.errors import DefectNasError
from defect_nas.core.runfolder import RunFolder
from defect_nas.data import imageio
from defect_nas.data.dataset import Dataset
from defect_nas.data.splits import Split


def read_for_model(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """``data.imageio.read_for_model`` as a uint8 tensor [1, channels, size, size] (``explain``)."""
    return torch.from_numpy(imageio.read_for_model(Path(path), channels, size))


def model_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """The float input of an exported model: uint8 pixels / 255."""
    return x_uint8.float() / 255


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 [N, C, H, W] stack once (antialiased bilinear), for a lower-fidelity proxy."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(256):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)



@dataclass(frozen=True)
class RecordedTest:
    """A run's recorded test split as model inputs (see ``recorded_test``)."""

    x8: torch.Tensor  # uint8 [N, C, size, size]
    truth: torch.Tensor  # int64 [N], indices into the model's labels
    files: list[str]
    dataset: Dataset
    split: Split


def recorded_test(run_dir: str | Path, size: int, labels: tuple[str, ...], part: str = "test") -> RecordedTest:
    """A run's recorded test split as the exported model sees it: uint8 pixels at the model's ``size``
    (as training scored them), the true label as an index into the model's ``labels``, the files. One
    function for ``explain``, the int8 check and the operating point, so all score the same images
    (``part="val"``: the validation split, which the operating point is chosen on)."""
    from defect_nas.data.registry import load_dataset

    run = RunFolder(run_dir)
    if not run.has_split():
        raise DefectNasError(f"{run.path}: not a run folder (config.json and split.json are missing): give the "
                             "folder defect-nas search or train wrote")
    dataset = load_dataset(run.read_config()["dataset"])
    return recorded_part(dataset, Split.from_json(run.read_split(), dataset), size, labels, part)


def recorded_part(dataset: Dataset, split: Split, size: int, labels: tuple[str, ...], part: str) -> RecordedTest:
    """One part of a loaded dataset's split as the exported model sees it (see ``recorded_test``)."""
    idx = split.part(part).tolist()
    truth = torch.tensor([labels.index(dataset.class_names[int(dataset.labels[i])]) for i in idx])
    return RecordedTest(resize_uint8(dataset.images[idx], size), truth, [dataset.paths[i] for i in idx],
                        dataset, split)
