"""Decode image files into one uint8 array [N, C, H, W] (Pillow, thread pool).

Policies (documented here because users see their effect):

* Channels: an image counts as *colour* when its mode carries colour (RGB, P,
  CMYK, ...) and its channels differ by more than ``GRAY_TOLERANCE`` grey
  levels somewhere; grayscale stored as RGB (common for JPEG copies) stays
  grayscale. The dataset is 1-channel unless some image is colour or the caller
  asks for ``channels=3``; with ``channels=1`` colour images are converted with
  Pillow's ITU-R 601 luma (L = 0.299 R + 0.587 G + 0.114 B). Alpha is dropped.
  16-bit images are reduced to 8 bits by keeping the high byte (32-bit "I" images
  only when some value exceeds 255; float images are clipped to 0..255).
* Size (``resize policy``): the target is ``size`` when given (int = square or
  (height, width)), else a square (the searched networks take square inputs):
  when one (height, width) holds at least half of the images, the square on its
  shorter side (NEU: all 200 x 200, so nothing changes); otherwise (line data of
  many sizes and aspect ratios) the median of sqrt(height x width), the side that
  keeps a typical image's pixel count. Images already at the target are kept
  bit-exact. Others are brought to it by ``RESIZE``: ``stretch`` scales each axis
  on its own (bilinear with Pillow's antialiasing), so nothing is cropped away: a
  center crop once dropped the outer thirds of wide images, and a defect there
  with them (results/benchmarks/line_recipe.*: crop vs letterbox vs stretch).
  ``predict`` fits every file the same way, so it sees what training saw.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from defect_nas.core.errors import DataError

GRAY_TOLERANCE = 3
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """Map in a thread pool (Pillow decoding and hashlib release the GIL); first error wins."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _gray_from_wide(arr: np.ndarray) -> np.ndarray:
    """32-bit int or float grey to 8 bits: values above 255 mean a 16-bit range (keep the high byte)."""
    if arr.dtype.kind == "f":
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    if arr.max(initial=0) > 255:
        arr = arr >> 8
    return np.clip(arr, 0, 255).astype(np.uint8)


def _to_array(im: Image.Image) -> np.ndarray:
    """Pillow image to uint8 [H, W] (grey) or [H, W, 3] (colour) following the channel policy."""
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0), dtype=np.uint8)
    if mode.startswith("I;16"):
        return (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
    if mode in _GRAY_MODES:
        return _gray_from_wide(np.asarray(im))
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    if int(spread.max(initial=0)) <= GRAY_TOLERANCE:
        return np.ascontiguousarray(rgb[:, :, 1]) if spread.max(initial=0) == 0 else to_gray(rgb)
    return rgb


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, computed by Pillow so results match `Image.convert('L')`."""
    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.uint8)


def decode_image(path: Path | bytes, name: str = "upload") -> np.ndarray:
    """Decode one file (or its bytes, as an HTTP upload brings them) fully; any failure becomes a
    DataError that names the file."""
    where = path if isinstance(path, Path) else name
    try:
        with Image.open(path if isinstance(path, Path) else io.BytesIO(path)) as im:
            im.load()
            return _to_array(im)
    except FileNotFoundError:
        raise DataError(f"image {where} disappeared while loading: re-run once the folder is stable") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot decode image {where} ({reason}): replace or delete the file") from None


def normalize_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Accept 200, (200, 200) or None; reject anything else with a DataError."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise DataError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise DataError(f"size must be positive, got {size!r}")
    return h, w


DOMINANT_SHARE = 0.5  # a shape held by this share of the images sets the target (NEU, cameras of one size)


def target_size(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The square the data is brought to (see the module docstring). Square because the models are:
    a 184 x 186 target once reached the final phase, whose rotated views no longer fitted the batch,
    and every final seed failed."""
    counts = Counter(shapes)
    h, w = max(counts, key=lambda hw: (counts[hw], hw[0] * hw[1], hw[0]))
    if counts[(h, w)] >= DOMINANT_SHARE * len(shapes):
        return min(h, w), min(h, w)
    side = int(round(float(np.median([np.sqrt(a * b) for a, b in shapes]))))
    side = min(MAX_SIDE, max(MIN_SIDE, side))
    return side, side


RESIZE_MODES = ("crop", "letterbox", "stretch")
RESIZE = "stretch"  # the policy of every load and of predict (measured: results/benchmarks/line_recipe.*)
MIN_SIDE, MAX_SIDE = 32, 512  # the input sizes the trainer and the search spaces accept


def fit(arr: np.ndarray, target: tuple[int, int], mode: str = RESIZE) -> np.ndarray:
    """Bring an image to ``target``: ``crop`` scales to cover and center-crops (drops the longer
    side's ends), ``letterbox`` scales to fit and pads with the image's mean grey, ``stretch``
    scales each axis on its own (keeps everything, changes the aspect ratio)."""
    h, w = arr.shape[:2]
    th, tw = target
    if (h, w) == (th, tw):
        return arr
    if mode == "stretch":
        return np.asarray(Image.fromarray(arr).resize((tw, th), Image.Resampling.BILINEAR))
    scale = max(th / h, tw / w) if mode == "crop" else min(th / h, tw / w)
    if mode == "crop":
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    else:
        nh, nw = min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))
    resized = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.Resampling.BILINEAR))
    if mode == "crop":
        top, left = (nh - th) // 2, (nw - tw) // 2
        return resized[top : top + th, left : left + tw]
    out = np.empty((th, tw, *arr.shape[2:]), dtype=np.uint8)
    out[...] = np.round(resized.reshape(nh * nw, -1).mean(0)).astype(np.uint8).reshape(arr.shape[2:])
    top, left = (th - nh) // 2, (tw - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def check_channels(channels: int | None) -> None:
    """Only 1 (grey) and 3 (RGB) are meaningful for the models we build."""
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3 (or left unset), got {channels!r}")


def choose_channels(arrays: Sequence[np.ndarray], channels: int | None) -> int:
    """1 unless some image is colour or the caller asked for a number."""
    check_channels(channels)
    if channels is not None:
        return channels
    return 3 if any(a.ndim == 3 for a in arrays) else 1


def to_chw(arr: np.ndarray, channels: int) -> np.ndarray:
    """[H, W] or [H, W, 3] to [C, H, W] with the requested channel count."""
    if arr.ndim == 3 and channels == 1:
        arr = to_gray(np.ascontiguousarray(arr))
    if arr.ndim == 2:
        return np.broadcast_to(arr, (channels, *arr.shape))
    return arr.transpose(2, 0, 1)


def pixel_hash(arr: np.ndarray) -> str:
    """sha256 of the raw uint8 pixels, C-order [C, H, W] (for 1 channel: row-major H x W)."""
    return hashlib.sha256(np.ascontiguousarray(arr)).hexdigest()


def read_images(
    files: Sequence[Path],
    *,
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
    workers: int | None = None,
    resize: str = RESIZE,
) -> tuple[np.ndarray, list[str], dict]:
    """Decode, resize and stack files; returns (uint8 [N, C, H, W], per-image pixel hashes, info)."""
    check_channels(channels)
    wanted = normalize_size(size)
    arrays = parallel_map(decode_image, list(files), workers)
    if not arrays:
        raise DataError("no images to load")
    target = wanted or target_size([a.shape[:2] for a in arrays])
    c = choose_channels(arrays, channels)
    colour = sum(a.ndim == 3 for a in arrays)
    out = np.empty((len(arrays), c, *target), dtype=np.uint8)

    def place(i: int) -> tuple[str, bool]:
        resized = arrays[i].shape[:2] != target
        out[i] = to_chw(fit(arrays[i], target, resize), c)
        arrays[i] = None  # type: ignore[call-overload]  # free memory as we go
        return pixel_hash(out[i]), resized

    results = parallel_map(place, list(range(len(arrays))), workers)
    info = {
        "size": list(target),
        "channels": c,
        "colour_images": colour,
        "resized": sum(r for _, r in results),
        "size_policy": "given size" if wanted else "square from the data's sizes (imageio.target_size)",
        "resize": resize,
    }
    return out, [h for h, _ in results], info


def read_for_model(image: Path | bytes, channels: int, size: int, name: str = "upload") -> np.ndarray:
    """uint8 [1, channels, size, size] of one image file (or its bytes: an HTTP upload), decoded and
    sized by the training data's own policy (16-bit keeps its high byte, grayscale saved as RGB stays
    grayscale, another size is scaled to the square axis by axis, nothing cropped away): what
    ``predict``, ``serve`` and ``explain`` give the model. A missing or unreadable file is one line."""
    where = name if isinstance(image, bytes) else str(image)
    if not isinstance(image, bytes) and not Path(image).is_file():
        raise DataError(f"{where}: no such image")
    try:
        arr = decode_image(image, name)
    except DataError:
        raise DataError(f"{where}: not a readable image") from None
    return np.array(to_chw(fit(arr, (size, size)), channels), copy=True)[None]  # writable, contiguous

