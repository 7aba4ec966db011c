"""One image file -> the exported model's input: the one path ``predict`` and ``explain`` share.

So that a file gives the model what training gave it, and the explanation shows what the deployed
model saw: the training data's decoder and size policy, the same scaling to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from defect_nas.core.errors import DataError, DefectNasError
from defect_nas.core.runfolder import RunFolder
from defect_nas.data.dataset import Dataset
from defect_nas.data.imageio import decode_image, fit, to_chw
from defect_nas.data.splits import Split


def read_for_model(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """uint8 [1, channels, size, size] of one image file, decoded and sized by the training data's
    own policy (``data.imageio``: 16-bit keeps its high byte, grayscale saved as RGB
    stays grayscale, another size is scaled to the square axis by axis, nothing cropped away); a
    missing or unreadable file is one line."""
    if not Path(path).is_file():
        raise DefectNasError(f"{path}: no such image")
    try:
        arr = decode_image(Path(path))
    except DataError:
        raise DefectNasError(f"{path}: not a readable image") from None
    arr = fit(arr, (size, size))
    return torch.from_numpy(np.array(to_chw(arr, channels), copy=True))[None]  # writable, contiguous


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


def recorded_test(run_dir: str | Path, size: int, labels: tuple[str, ...]) -> RecordedTest:
    """A run's recorded test split as the exported model sees it: uint8 pixels at the model's ``size``
    (as training scored them), the true label as an index into the model's ``labels``, the files. One
    function for ``explain`` and the int8 check, so both score the same images."""
    from defect_nas.data.registry import load_dataset

    run = RunFolder(run_dir)
    if not run.has_split():
        raise DefectNasError(f"{run.path}: not a run folder (config.json and split.json are missing): give the "
                             "folder defect-nas search or train wrote")
    dataset = load_dataset(run.read_config()["dataset"])
    split = Split.from_json(run.read_split(), dataset)
    test = split.test.tolist()
    truth = torch.tensor([labels.index(dataset.class_names[int(dataset.labels[i])]) for i in test])
    return RecordedTest(resize_uint8(dataset.images[test], size), truth, [dataset.paths[i] for i in test],
                        dataset, split)
