"""One image file -> the exported model's input: the one path ``predict`` and ``explain`` share.

So that what a user runs on a file is exactly what the explanation shows: the same decoding
(8-bit grayscale or RGB, as the model's first conv expects), the same antialiased resize to the
model's input size, the same scaling to [0, 1] inside ``model_input``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators.augment import resize_uint8


def read_for_model(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """uint8 [1, channels, size, size] of one image file; a missing or unreadable file is one line."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB")).copy()
    except FileNotFoundError:
        raise DefectNasError(f"{path}: no such image") from None
    except (UnidentifiedImageError, OSError):
        raise DefectNasError(f"{path}: not a readable image") from None
    x = torch.from_numpy(arr)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    return resize_uint8(x, size) if x.shape[-1] != size or x.shape[-2] != size else x


def model_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """The float input of an exported model: uint8 pixels / 255."""
    return x_uint8.float() / 255
