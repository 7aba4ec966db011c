"""Whole-batch augmentation as tensor ops (no per-image Python, no DataLoader workers).

Texture images have no canonical orientation, so the eight flips/rotations of the square
(the dihedral group D4) are label-preserving views. Because the views are discrete, a teacher's
logits can be precomputed once per (image, view) and distillation needs no teacher forward pass
during candidate training. Random resized crops are optional; with distillation they reuse the
uncropped view's teacher logits (an approximation, stated in the run config).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NUM_VIEWS = 8
SHAPE_VIEWS = (0, 2, 5, 7)  # identity, half turn and the two mirror flips: the views that keep H x W


def views_for(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The views a batch of this shape may take: all eight when square; when not, the four that keep
    its shape (a quarter turn of a 128 x 320 batch is 320 x 128 and no longer stacks with the rest)."""
    return torch.tensor(range(NUM_VIEWS) if height == width else SHAPE_VIEWS, device=device)


def dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """View ``view`` (0..7) of a batch [N, C, H, W]: rotation by 90 * (view % 4), transposed if view >= 4."""
    if view >= 4:
        x = x.transpose(-1, -2)
    return torch.rot90(x, view % 4, dims=(-2, -1))


def apply_views(x: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Each sample i of ``x`` in its own view ``views[i]``; one op per distinct view, not per image.
    On a GPU one gather instead (``gather_views``): selecting each view's samples would stop the
    host at every step to learn how many there are."""
    if x.is_cuda and x.shape[-1] == x.shape[-2]:
        return gather_views(x, views)
    out = torch.empty_like(x)
    for v in range(NUM_VIEWS):
        idx = (views == v).nonzero(as_tuple=True)[0]
        if len(idx):
            out[idx] = dihedral(x[idx], v)
    return out


def view_permutations(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[8, size * size]: the flat pixel index each output pixel of each view reads (square images)."""
    grid = torch.arange(size * size, device=device).view(1, 1, size, size)
    return torch.cat([dihedral(grid, v).reshape(1, -1) for v in range(NUM_VIEWS)])


def gather_views(x: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """``apply_views`` of a square batch as one gather, with no data-dependent shapes."""
    n, c, h, w = x.shape
    idx = view_permutations(h, x.device)[views.long()].unsqueeze(1).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, idx).view(n, c, h, w)


def _crop_grid(x: torch.Tensor, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """A random square crop per sample (``min_scale``..1 of the area), as a ``grid_sample`` grid."""
    n = x.shape[0]
    scale = torch.empty(n, device=x.device).uniform_(min_scale, 1.0, generator=generator).sqrt()
    cx = (torch.rand(n, generator=generator, device=x.device) * 2 - 1) * (1 - scale)
    cy = (torch.rand(n, generator=generator, device=x.device) * 2 - 1) * (1 - scale)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = scale, scale, cx, cy
    return F.affine_grid(theta, list(x.shape), align_corners=False)


def random_resized_crop(x: torch.Tensor, min_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random square crops covering ``min_scale``..1 of the area, resized back, in one
    ``grid_sample`` call for the whole batch."""
    grid = _crop_grid(x, min_scale, generator)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def paired_views(x: torch.Tensor, masks: torch.Tensor, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, C, H, W] and their masks [N, H, W] in the same dihedral view each: a flip or turn
    moves a defect's pixels and its label together."""
    return apply_views(x, views), apply_views(masks.unsqueeze(1), views).squeeze(1)


def paired_resized_crop(x: torch.Tensor, masks: torch.Tensor, min_scale: float,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``random_resized_crop`` of images and masks with one crop per pair: bilinear for the image,
    nearest for the mask (a label never blends into another)."""
    grid = _crop_grid(x, min_scale, generator)
    image = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mask = F.grid_sample(masks.unsqueeze(1).to(x.dtype), grid, mode="nearest", padding_mode="reflection",
                         align_corners=False)
    return image, mask.squeeze(1).round().to(masks.dtype)
