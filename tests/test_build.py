"""The one builder and its blocks: every space builds and runs; blocks match their papers."""

from pathlib import Path

import pytest
import torch
from torch import nn

from defect_nas.core.spec import LW_KERNELS, ArchSpec, Basic, Bottleneck, Conv, Head
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces
from defect_nas.search_spaces.blocks import LWBottleneck
from defect_nas.search_spaces.build import build

SPACES = sorted(all_spaces())


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("in_channels, size", [(1, 32), (3, 64), (1, 200), (3, 97)])
def test_random_specs_build_and_give_one_logit_per_class(space, in_channels, size):
    for seed in range(4):
        spec = all_spaces()[space].propose(RandomTrial(seed), Task(in_channels, size, 5))
        model = build(spec).eval()
        with torch.no_grad():
            out = model(torch.rand(2, in_channels, size, size))
        assert out.shape == (2, 5)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("space", SPACES)
def test_prototypes_build_at_largest_input(space):
    for spec in all_spaces()[space].prototypes(Task(1, 512, 6)).values():
        with torch.no_grad():
            assert build(spec).eval()(torch.rand(1, 1, 512, 512)).shape == (1, 6)


def test_lw_bottleneck_is_huangs_block():
    block = LWBottleneck(8, 16, stride=2)
    dw = [m for m in block.paths.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.kernel_size) for c in dw] == list(LW_KERNELS)
    assert all(c.groups == 8 and c.in_channels == c.out_channels == 8 for c in dw)  # depthwise
    assert all(c.stride == (2, 2) for c in dw)  # stride applied in the depthwise convs
    assert block.project[0].kernel_size == (1, 1) and block.project[0].in_channels == 64
    # ReLU6 after the depthwise part only: the projection is linear (conv + BN, no activation)
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in block.project.modules())
    assert isinstance(block.act, nn.ReLU6)
    for size in (7, 8, 33):  # every path (odd and even kernels) gives the same size
        outs = [p(torch.rand(1, 8, size, size)) for p in block.paths]
        assert {o.shape for o in outs} == {(1, 8, (size + 1) // 2, (size + 1) // 2)}
    assert block(torch.rand(1, 8, 9, 9)).shape == (1, 16, 5, 5)


def test_lw_bottleneck_residual_only_when_shapes_match():
    same, wider = LWBottleneck(8, 8, 1).eval(), LWBottleneck(8, 16, 1).eval()
    assert same.residual and not wider.residual and not LWBottleneck(8, 8, 2).residual
    nn.init.zeros_(same.project[1].weight)  # zero the projection: only the shortcut remains
    x = torch.rand(1, 8, 10, 10)
    assert torch.allclose(same(x), x)


def test_residual_blocks_project_the_shortcut_when_shapes_change():
    spec = ArchSpec(1, 32, 3, (Conv(8),), ((Basic(8), Basic(16, 3, 2), Bottleneck(16, 5, 1, 4)),))
    model = build(spec)
    basic_same, basic_down, bottleneck = model.features[1], model.features[2], model.features[3]
    assert isinstance(basic_same.shortcut, nn.Identity) and isinstance(bottleneck.shortcut, nn.Identity)
    proj = basic_down.shortcut[0]
    assert proj.kernel_size == (1, 1) and proj.stride == (2, 2) and proj.out_channels == 16
    assert bottleneck.body[0][0].out_channels == 4  # out // expansion
    assert bottleneck.body[2][0].kernel_size == (5, 5)


def test_kim_student_block_is_biased_conv3_relu_maxpool():
    spec = ArchSpec(3, 64, 12, (), ((Conv(4, 3, 1, "relu", norm=False, pool=2),),), Head("flatten", (4096,)))
    block = build(spec).features[0]
    assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    assert block[0].bias is not None and block[0].kernel_size == (3, 3)
    assert build(spec).head[1].in_features == 4 * 32 * 32


def test_strided_pointwise_shortcut_equals_a_strided_conv_and_survives_channels_last_backward():
    """torch 2.14's CPU backward of a 1x1 stride-2 conv on channels_last input with 4 channels at
    112 px corrupts the heap (SIGSEGV); the residual shortcut must compute the same thing another way."""
    import subprocess
    import sys

    from defect_nas.search_spaces.blocks import conv_bn

    shortcut = conv_bn(4, 8, 1, 2)[0]
    x = torch.rand(2, 4, 16, 16)
    assert torch.allclose(shortcut(x), torch.nn.functional.conv2d(x, shortcut.weight, stride=2), atol=1e-6)
    code = (
        "import torch\n"
        "from defect_nas.search_spaces.blocks import basic_block\n"
        "m = basic_block(4, 8, 3, 2).to(memory_format=torch.channels_last)\n"
        "for _ in range(3):\n"
        "    m(torch.rand(32, 4, 112, 112).contiguous(memory_format=torch.channels_last)).sum().backward()\n"
    )
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.returncode, p.stderr[-500:])
