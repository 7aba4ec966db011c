"""The VGG16 teacher (Kim et al.): pretrained conv layers with neutral border padding, new FC layers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators.pretrained.vgg16_weights import SCRATCH_PROVENANCE, _resolve_vgg16, vgg16_features


def load_vgg16_features(
    source: str = "auto",
    *,
    weights_file: Path | str | None = None,
    in_channels: int = 1,
    cache_dir: Path | str | None = None,
    file_convention: str = "torchvision",
    border: str = "neutral",
    batch_norm: bool = False,
) -> tuple[nn.Sequential, str]:
    """VGG16 ``features`` with the weights of :func:`vgg16_feature_weights`, and their provenance.

    conv1_1 is a :class:`PadValueConv2d` whatever the source (uniform state-dict keys).
    border: ``"neutral"`` (default): it pads with :func:`neutral_pad_value` of the folded
    convention, as the original model did (exact for RGB, close for grayscale; a file saved from
    a model built here keeps its own pad value; scratch: 0); ``"zeros"``: zero padding in raw
    space (black frame, see module doc). Input: float32 [N, in_channels, H, W] in [0, 1].
    """
    if border not in ("neutral", "zeros"):
        raise DefectNasError(f"border must be 'neutral' or 'zeros', got {border!r}")
    sd, provenance, pad = _resolve_vgg16(source, weights_file, in_channels, cache_dir, file_convention)
    if batch_norm and sd is not None:
        raise DefectNasError("VGG16's pretrained weights have no batch norm: batch norm is for a scratch teacher")
    features = vgg16_features(in_channels, pad_value=pad if border == "neutral" else (0.0,) * in_channels,
                              batch_norm=batch_norm)
    if sd is not None:
        missing, unexpected = features.load_state_dict(sd, strict=False)
        if missing != ["0.pad_value"] or unexpected:  # sd was checked: cannot happen
            raise RuntimeError(f"VGG16 features state dict mismatch: {missing} {unexpected}")
    return features, provenance


class VGG16Teacher(nn.Module):
    """torchvision VGG16 ``features`` + adaptive avg-pool + 3 new FC layers, for [0, 1] input.

    The classifier mirrors torchvision's (Linear-ReLU-Dropout x2, Linear; keys classifier.0/3/6);
    ``fc_hidden=4096, pool_size=7`` is VGG16's own FC shape (used by Kim et al.). The default
    ``fc_hidden=512`` is a CPU-budget choice (FC1 12.8M instead of 102.8M parameters).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        *,
        fc_hidden: int = 512,
        pool_size: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_classes < 1 or fc_hidden < 1 or pool_size < 1:
            raise DefectNasError(
                f"teacher needs num_classes, fc_hidden, pool_size >= 1 (got {num_classes}, {fc_hidden}, {pool_size})"
            )
        self.in_channels = in_channels
        self.features = vgg16_features(in_channels, pad_value=(0.0,) * in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(512 * pool_size * pool_size, fc_hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(fc_hidden, fc_hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(fc_hidden, num_classes),
        )
        for m in self.classifier:
            if isinstance(m, nn.Linear):  # torchvision's VGG init
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        self.provenance = SCRATCH_PROVENANCE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def build_vgg16_teacher(
    num_classes: int,
    in_channels: int = 1,
    source: str = "auto",
    *,
    weights_file: Path | str | None = None,
    cache_dir: Path | str | None = None,
    file_convention: str = "torchvision",
    border: str = "neutral",
    fc_hidden: int = 512,
    pool_size: int = 7,
    dropout: float = 0.5,
    batch_norm: bool = False,
) -> VGG16Teacher:
    """VGG16 teacher whose 13 convs come from :func:`load_vgg16_features`; new FC layers.

    Input: float32 [N, in_channels, H, W] in [0, 1]. The weights' provenance is in ``.provenance``.
    Default head: avg-pool to 7x7, FC 25088-512-512-num_classes (VGG16's is 4096 wide: pass
    ``fc_hidden=4096`` for Kim et al.'s shape). ``batch_norm``: VGG16-BN's features (scratch only),
    which train from random weights where plain VGG16 stays at chance.
    """
    features, provenance = load_vgg16_features(
        source, weights_file=weights_file, in_channels=in_channels, cache_dir=cache_dir,
        file_convention=file_convention, border=border, batch_norm=batch_norm,
    )
    model = VGG16Teacher(num_classes, in_channels, fc_hidden=fc_hidden, pool_size=pool_size, dropout=dropout)
    model.features = features
    model.provenance = provenance
    return model
