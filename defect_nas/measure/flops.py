"""Independent MAC counts of a built model (fvcore, ptflops), the cross-checks of ``core.cost``.

``core.cost`` counts analytically from the spec; these count the torch module the builder made, so
``tests/test_cost.py`` can hold the two equal on random specs of every space, and baselines that are
not ArchSpecs (ResNet-50, MobileNetV2) get a MAC count by the same convention.
"""

from __future__ import annotations

import contextlib
import io

import torch
from fvcore.nn import FlopCountAnalysis
from ptflops import get_model_complexity_info
from ptflops.pytorch_ops import conv_flops_counter_hook

from defect_nas.search_spaces.blocks import StridedPointwise

_FVCORE_OPS = {"conv", "linear", "addmm", "matmul", "mm", "bmm"}


def fvcore_macs(model, in_channels: int, input_size: int) -> int:
    """fvcore's count of conv and linear MACs on the built model (eval mode, batch 1)."""
    was_training = model.training
    model.eval()
    try:
        fca = FlopCountAnalysis(model, torch.zeros(1, in_channels, input_size, input_size))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(sum(v for k, v in fca.by_operator().items() if k in _FVCORE_OPS))
    finally:
        model.train(was_training)


def ptflops_macs(model, in_channels: int, input_size: int, backend: str = "pytorch") -> int:
    """ptflops' MAC count, for comparison only. With the 'pytorch' backend it also counts
    BatchNorm, ReLU, pooling and biases, and (count_functional=False) not the residual adds."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        value, _ = get_model_complexity_info(
            model, (in_channels, input_size, input_size), as_strings=False,
            print_per_layer_stat=False, backend=backend,
            backend_specific_config={"count_functional": False},
            custom_modules_hooks={StridedPointwise: conv_flops_counter_hook},  # a Conv2d subclass: count it as one
        )
    return int(value)
