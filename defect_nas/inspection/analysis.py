"""Kim et al.'s analyses of why transfer learning compresses, per conv layer of a trained network.

* weight-change rate (their eq. 2): ``||w_trained - w_0||_2 / ||w_0||_2`` of each conv layer's
  weights, against the weights it started from (ImageNet for a transfer teacher, the seeded random
  init for a scratch one);
* dead-channel sparsity (eq. 3): the fraction of a layer's output channels (after its activation)
  that are zero everywhere for an image, averaged over the images;
* disentanglement d (eqs. 4-6): the mean relative gap between graph-geodesic distances (shortest
  paths in the k-nearest-neighbour graph, k = 5) and Euclidean distances of the images'
  flattened layer outputs; 0 for a flat, fully unfolded manifold.

Their finding on DAGM: transfer-learned upper layers change little, are very sparse (90% dead
channels in the last conv layer vs 8% from scratch) and more disentangled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import nn


@dataclass
class LayerAnalysis:
    layer: str  # the conv module's name in the model
    channels: int
    weight_change: float | None  # eq. 2; None without initial weights
    sparsity: float  # eq. 3, mean over images
    disentanglement: float  # eq. 6 over the pairs the kNN graph connects
    connected_pairs: float  # fraction of pairs with a finite geodesic distance

    def to_dict(self) -> dict:
        return asdict(self)


def conv_activations(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.Module]]:
    """(name, conv, the module whose output is that conv's activated output), in forward order:
    the first ReLU/ReLU6 after each conv (through a batch norm). Exact for plain stacks such as
    VGG16, the nets of the analysis; in a residual block a conv followed directly by another (the
    shortcut) is reported with the next activation, the block output."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    out, pending = [], None
    for name, m in leaves:
        if isinstance(m, nn.Conv2d):
            pending = (name, m)
        elif pending is not None and isinstance(m, nn.ReLU | nn.ReLU6):
            out.append((pending[0], pending[1], m))
            pending = None
    return out


def weight_change(trained: nn.Conv2d, initial: nn.Conv2d) -> float:
    w, w0 = trained.weight.detach().double(), initial.weight.detach().double()
    return float((w - w0).norm() / w0.norm().clamp_min(1e-12))


def disentanglement(features: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """(d, fraction of connected pairs) of N points [N, P] (eqs. 4-6): Euclidean distances, and
    shortest paths in the symmetrised k-nearest-neighbour graph whose edges are Euclidean lengths."""
    x = features.double()
    d_e = torch.cdist(x, x).numpy()
    n = len(d_e)
    nearest = np.argsort(d_e, axis=1)[:, 1 : k + 1]
    rows = np.repeat(np.arange(n), nearest.shape[1])
    graph = csr_matrix((d_e[rows, nearest.ravel()], (rows, nearest.ravel())), shape=(n, n))
    d_g = shortest_path(graph, method="D", directed=False)
    iu = np.triu_indices(n, 1)
    e, g = d_e[iu], d_g[iu]
    ok = np.isfinite(g) & (e > 0)
    d = float(np.mean(np.abs(g[ok] - e[ok]) / e[ok])) if ok.any() else float("nan")
    return d, float(ok.mean())


@torch.no_grad()
def analyze(model: nn.Module, images: torch.Tensor, initial: nn.Module | None = None, k: int = 5,
            batch: int = 16) -> list[LayerAnalysis]:
    """Per conv layer of ``model`` on float inputs ``images`` [N, C, H, W] (eval mode, CPU)."""
    model.eval()
    layers = conv_activations(model)
    init_convs = {n: c for n, c, _ in conv_activations(initial)} if initial is not None else {}
    feats: dict[str, list[torch.Tensor]] = {name: [] for name, _, _ in layers}
    dead: dict[str, list[torch.Tensor]] = {name: [] for name, _, _ in layers}
    hooks = []
    for name, _, act in layers:
        def hook(_m, _i, out, name=name):
            dead[name].append((out.flatten(2).abs().amax(2) == 0).float().mean(1))
            feats[name].append(out.flatten(1).to(torch.float16))
        hooks.append(act.register_forward_hook(hook))
    try:
        for i in range(0, len(images), batch):
            model(images[i : i + batch])
    finally:
        for h in hooks:
            h.remove()
    result = []
    for name, conv, _ in layers:
        d, connected = disentanglement(torch.cat(feats[name]).float(), k)
        feats[name] = []  # free this layer's features before the next
        wc = weight_change(conv, init_convs[name]) if name in init_convs else None
        result.append(LayerAnalysis(name, conv.out_channels, wc, float(torch.cat(dead[name]).mean()), d, connected))
    return result
