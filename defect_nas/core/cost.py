"""Exact analytic cost of an ArchSpec, without building it.

MACs are defined as fvcore counts them for conv and linear layers: one multiply-accumulate
per weight use, conv and linear biases not counted, BatchNorm not counted (it folds into the
preceding conv for deployment), and ReLU, pooling and residual adds not counted. "FLOPs" on
the command line means these MACs (fvcore's convention); reports also show 2 x MACs for papers
that count a multiply and an add separately (e.g. Huang et al.'s TensorFlow FLOPs).

``params`` is exactly ``sum(p.numel() for p in build(spec).parameters())`` (BN affine weights
included, running statistics excluded since they are buffers).
``tests/test_cost.py`` holds both equal to fvcore and torch on random specs of every space.
"""

from __future__ import annotations

from dataclasses import dataclass

from defect_nas.core.errors import SpecError
from defect_nas.core.spec import (
    GLOBAL_POOLS,
    LW,
    LW_KERNELS,
    ArchSpec,
    Basic,
    Bottleneck,
    Conv,
    Decoder,
    feature_sizes,
    out_size,
    pool_size,
    tap_point,
)


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int


def _conv(cin: int, cout: int, kh: int, kw: int, size_out: int, groups: int = 1, bias: bool = False) -> Cost:
    weights = cout * (cin // groups) * kh * kw
    return Cost(weights * size_out * size_out, weights + (cout if bias else 0))


def _bn(c: int) -> Cost:
    return Cost(0, 2 * c)


def _sum(*costs: Cost) -> Cost:
    return Cost(sum(c.macs for c in costs), sum(c.params for c in costs))


def _shortcut(cin: int, cout: int, stride: int, size_out: int) -> Cost:
    if stride == 1 and cin == cout:
        return Cost(0, 0)
    return _sum(_conv(cin, cout, 1, 1, size_out), _bn(cout))


def block_cost(b, cin: int, size_in: int) -> tuple[Cost, int]:
    """Cost of one block and its output map size."""
    s = out_size(size_in, b.stride)
    if isinstance(b, Conv):
        c = _conv(cin, b.out, b.kernel, b.kernel, s, bias=not b.norm)
        return (_sum(c, _bn(b.out)) if b.norm else c), pool_size(s, b.pool)
    if isinstance(b, Basic):
        k = b.kernel
        parts = [_conv(cin, b.out, k, k, s), _bn(b.out), _conv(b.out, b.out, k, k, s), _bn(b.out)]
        return _sum(*parts, _shortcut(cin, b.out, b.stride, s)), s
    if isinstance(b, Bottleneck):
        k, m = b.kernel, b.mid
        parts = [
            _conv(cin, m, 1, 1, size_in), _bn(m),
            _conv(m, m, k, k, s), _bn(m),
            _conv(m, b.out, 1, 1, s), _bn(b.out),
        ]
        return _sum(*parts, _shortcut(cin, b.out, b.stride, s)), s
    if isinstance(b, LW):
        parts = [_sum(_conv(cin, cin, kh, kw, s, groups=cin), _bn(cin)) for kh, kw in LW_KERNELS]
        n = len(LW_KERNELS) * cin
        return _sum(*parts, _conv(n, b.out, 1, 1, s), _bn(b.out)), s
    raise TypeError(f"unknown block {b!r}")


def cost(spec: ArchSpec, input_size: int | None = None) -> Cost:
    """MACs and params of ``spec`` at ``input_size`` (default: the spec's own)."""
    size = spec.input_size if input_size is None else input_size
    if spec.head.pool == "flatten" and size != spec.input_size:
        raise SpecError(
            f"input_size: a flatten head is tied to the spec's input size {spec.input_size}, not {size}"
        )
    feature_sizes(spec, size)  # raises SpecError if a stride or pool collapses the map at this size
    total, cin, tapped = Cost(0, 0), spec.in_channels, None
    tap = tap_point(spec)
    for i, (_, b) in enumerate(spec.blocks()):
        c, size = block_cost(b, cin, size)
        total, cin = _sum(total, c), b.out
        if i == tap:
            tapped = (cin, size)
    if spec.decoder is not None:
        return _sum(total, decoder_cost(spec.decoder, cin, size, tapped, spec.num_classes))
    width = cin if spec.head.pool in GLOBAL_POOLS else cin * size * size
    for out in (*spec.head.fc, spec.num_classes):
        total = _sum(total, Cost(width * out, width * out + out))
        width = out
    return total


def decoder_cost(d: Decoder, cin: int, size: int, tapped: tuple[int, int] | None, classes: int) -> Cost:
    """The decoder on a ``cin`` x ``size``^2 backbone map; ``tapped`` = (channels, size) of the shortcut's
    map. Bilinear upsampling is not a MAC (fvcore's conv + linear convention): it is not counted."""
    w = d.width
    parts = [_conv(cin, w, 1, 1, size), _bn(w)]  # the ASPP's 1x1 branch
    for _ in d.rates:  # depthwise 3x3 at the rate ('same' padding keeps the size), pointwise to the width
        parts += [_conv(cin, cin, 3, 3, size, groups=cin), _bn(cin), _conv(cin, w, 1, 1, size), _bn(w)]
    parts += [_conv((1 + len(d.rates)) * w, w, 1, 1, size), _bn(w)]  # the ASPP's projection
    fused = w
    if tapped is not None:
        tc, size = tapped
        parts += [_conv(tc, d.skip, 1, 1, size), _bn(d.skip), _conv(w + d.skip, w, 1, 1, size), _bn(w)]
    parts.append(_conv(fused, classes, 1, 1, size, bias=True))  # the per-pixel classifier
    return _sum(*parts)


def macs(spec: ArchSpec, input_size: int | None = None) -> int:
    """Multiply-accumulates of one forward pass of one image (fvcore's conv + linear count)."""
    return cost(spec, input_size).macs


def params(spec: ArchSpec) -> int:
    """Trainable parameters, exactly as ``sum(p.numel())`` of the built model."""
    return cost(spec).params
