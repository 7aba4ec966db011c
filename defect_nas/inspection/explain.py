"""What drove a decision: Grad-CAM / saliency maps (captum) and the deletion test that checks them.

TinyDefectNet validates its network by explainability: a defect classifier that is right for the
wrong reason (a border, a lighting gradient) fails on the next batch of steel. The maps come from
captum (maintained, tested) rather than hand-written hooks: Grad-CAM on the output of the last
conv stage (``model.features``), upsampled to the input, and plain input-gradient saliency as a
cheap second opinion. The deletion test (Petsiuk et al.'s "deletion" metric) makes the maps
falsifiable: remove the most-attributed pixels first and the probability of the predicted class
must fall faster than when the same number of random pixels is removed; the area under each
curve is the number to compare (lower = the map found what the decision rests on).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam, Saliency
from torch import nn

from defect_nas.core.errors import DefectNasError


def _last_conv_stage(model: nn.Module) -> nn.Module:
    stage = getattr(model, "features", None)
    if stage is None:
        raise DefectNasError("explain needs a model with a `features` conv stack (a defect-nas network)")
    return stage


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] (an all-zero map stays zero)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[N, H, W] Grad-CAM of class ``target`` on the last conv stage, ReLU'd, upsampled, in [0, 1]."""
    cam = LayerGradCam(model, _last_conv_stage(model))
    a = cam.attribute(x, target=target, relu_attributions=True)
    up = LayerAttribution.interpolate(a, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return _normalise(up[:, 0].detach())


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[N, H, W] absolute input gradient of class ``target`` (max over channels), in [0, 1]."""
    g = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    return _normalise(g.amax(1).detach())


METHODS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": gradcam, "saliency": saliency,
}


def attribute(model: nn.Module, x: torch.Tensor, method: str = "gradcam",
              target: torch.Tensor | None = None, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps [N, H, W], probabilities [N, K]) for float inputs ``x``; ``target`` defaults to the
    predicted class, which is what a user asks about ("why did it say scratches?")."""
    if method not in METHODS:
        raise DefectNasError(f"unknown explanation method {method!r}: choose --method {', '.join(METHODS)}")
    model.eval()
    maps, probs = [], []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        with torch.no_grad():
            p = torch.softmax(model(xb), 1)
        t = p.argmax(1) if target is None else target[i : i + batch]
        maps.append(METHODS[method](model, xb, t))
        probs.append(p)
    return torch.cat(maps), torch.cat(probs)


@torch.no_grad()
def deletion_curves(model: nn.Module, x: torch.Tensor, target: torch.Tensor, maps: torch.Tensor,
                    steps: int = 20, seed: int = 0, batch: int = 64) -> dict[str, np.ndarray]:
    """Probability of ``target`` as the top-attributed (or random) pixels are replaced by the
    image's mean, at ``steps`` + 1 equally spaced fractions 0..1. Returns ``fractions`` [S] and
    ``attribution`` / ``random`` [N, S]."""
    model.eval()
    n, c, h, w = x.shape
    fractions = np.linspace(0.0, 1.0, steps + 1)
    order_attr = maps.flatten(1).argsort(1, descending=True)
    g = torch.Generator().manual_seed(seed)
    order_rand = torch.stack([torch.randperm(h * w, generator=g) for _ in range(n)])
    fill = x.mean((2, 3), keepdim=True).expand_as(x).flatten(2)
    out = {}
    for name, order in (("attribution", order_attr), ("random", order_rand)):
        curve = np.zeros((n, len(fractions)))
        for j, f in enumerate(fractions):
            k = int(round(f * h * w))
            xs = x.flatten(2).clone()
            if k:
                idx = order[:, :k].unsqueeze(1).expand(n, c, k)
                xs.scatter_(2, idx, fill.gather(2, idx))
            xs = xs.view(n, c, h, w)
            p = torch.cat([torch.softmax(model(xs[i : i + batch]), 1) for i in range(0, n, batch)])
            curve[:, j] = p.gather(1, target.view(-1, 1))[:, 0].numpy()
        out[name] = curve
    out["fractions"] = fractions
    return out


def area_under(fractions: np.ndarray, curve: np.ndarray) -> float:
    """Trapezoid area under the mean curve over [0, 1]."""
    return float(np.trapezoid(curve.mean(0), fractions))


def overlay(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.45):
    """A PIL RGB image: the uint8 input [C, H, W] in gray (or colour) under a jet heat map [H, W]."""
    from matplotlib import colormaps
    from PIL import Image

    base = image.float() / 255
    base = base.expand(3, -1, -1) if base.shape[0] == 1 else base
    colour = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).permute(2, 0, 1).float()
    mixed = (1 - alpha) * base + alpha * colour
    return Image.fromarray((mixed.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
