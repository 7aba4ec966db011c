"""A segmenter's output as files a person and a program can both read: class-index mask PNGs that carry
a colour palette (viewers show colours, ``np.asarray(Image.open(p))`` gives the indices back) and overlays
of the mask on its image. numpy and Pillow only, as the stand-alone predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# background transparent/black, then distinct colours (Kelly's / Tableau-like), cycled beyond 8 classes
PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230))


def colour_of(index: int) -> tuple[int, int, int]:
    return PALETTE[0] if index == 0 else PALETTE[1 + (index - 1) % (len(PALETTE) - 1)]


def mask_image(mask: np.ndarray) -> Image.Image:
    """A palette ("P") PNG image of a uint8 class-index mask [H, W]: its pixel values are the indices."""
    im = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # "L"; putpalette makes it "P", values kept
    im.putpalette([v for i in range(256) for v in colour_of(i)])
    return im


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """RGB image with each non-background pixel tinted in its class colour; ``image`` uint8 [C, H, W]
    (1 or 3 channels, as the model reads it) or [H, W]."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a.transpose(1, 2, 0)
        a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
    else:
        a = np.stack([a] * 3, axis=2)
    rgb = a.astype(np.float32)
    colours = np.array([colour_of(i) for i in range(int(mask.max()) + 1)], dtype=np.float32)
    tint = colours[mask]
    on = (mask > 0)[..., None]
    out = np.where(on, (1 - alpha) * rgb + alpha * tint, rgb)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def save_mask_and_overlay(image: np.ndarray, mask: np.ndarray, masks_dir: Path, overlays_dir: Path,
                          stem: str) -> tuple[Path, Path]:
    """``masks_dir/<stem>.png`` (class indices) and ``overlays_dir/<stem>.png``."""
    masks_dir.mkdir(parents=True, exist_ok=True)
    overlays_dir.mkdir(parents=True, exist_ok=True)
    m, o = masks_dir / f"{stem}.png", overlays_dir / f"{stem}.png"
    mask_image(mask).save(m)
    overlay(image, mask).save(o)
    return m, o
