"""One image file -> the exported model's input: the one path ``predict`` and ``explain`` share.

So that a file gives the model what training gave it, and the explanation shows what the deployed
model saw: the training data's decoder and size policy, the same scaling to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from defect_nas.core.errors import DataError, DefectNasError
from defect_nas.evaluators.data.imageio import decode_image, fit, to_chw


def read_for_model(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """uint8 [1, channels, size, size] of one image file, decoded and sized by the training data's
    own policy (``evaluators.data.imageio``: 16-bit keeps its high byte, grayscale saved as RGB
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
