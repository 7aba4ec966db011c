"""One image file -> the exported model's input: the one path ``predict`` and ``explain`` share.

So that a file gives the model what training gave it, and the explanation shows what the deployed
model saw: the training data's decoder and size policy, the same scaling to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from defect_nas.core.errors import DataError, DefectNasError
from defect_nas.data.imageio import decode_image, fit, to_chw


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
