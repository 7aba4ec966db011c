"""ArchSpec: the one frozen, JSON-serialisable description of a whole network.

It is what a search space proposes, the budget fits, the cost model counts, the
builder turns into a module, a trial stores, and an export reloads. Loading from
JSON validates everything and names the offending field, so a bad file fails at
the door instead of deep inside torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from defect_nas.core.errors import SpecError

MAX_WIDTH = 4096
MAX_BLOCKS = 64
MAX_KERNEL = 11
MIN_INPUT, MAX_INPUT = 32, 512
MAX_CLASSES = 10_000
MAX_FC = 16_384
ACTIVATIONS = ("relu", "relu6", "none")
#: The eight parallel depthwise kernels (height, width) of Huang et al.'s LW bottleneck.
LW_KERNELS: tuple[tuple[int, int], ...] = ((5, 1), (1, 5), (3, 1), (1, 3), (2, 1), (1, 2), (2, 2), (3, 3))


@dataclass(frozen=True)
class Conv:
    """conv-BN-activation, optionally followed by a max-pool (Kim et al.'s "conv3 + maxpool").

    ``norm=False`` gives a biased conv without BatchNorm (Kim's student has none).
    ``pool`` is the max-pool kernel (0 = none; 2 = 2x2/2 as in VGG; 3 = 3x3/2 pad 1 as in ResNet).
    """

    out: int
    kernel: int = 3
    stride: int = 1
    act: str = "relu"
    norm: bool = True
    pool: int = 0
    type: str = field(default="conv", init=False)


@dataclass(frozen=True)
class Basic:
    """ResNet basic block: two kxk convs, identity or 1x1 projection shortcut."""

    out: int
    kernel: int = 3
    stride: int = 1
    type: str = field(default="basic", init=False)


@dataclass(frozen=True)
class Bottleneck:
    """ResNet bottleneck block: 1x1 reduce to ``out // expansion``, kxk, 1x1 expand; shortcut."""

    out: int
    kernel: int = 3
    stride: int = 1
    expansion: int = 4
    type: str = field(default="bottleneck", init=False)

    @property
    def mid(self) -> int:
        return max(1, self.out // self.expansion)


@dataclass(frozen=True)
class LW:
    """Huang et al.'s LW bottleneck: 8 parallel depthwise convs, concat, ReLU6, linear 1x1."""

    out: int
    stride: int = 1
    type: str = field(default="lw", init=False)


Block = Conv | Basic | Bottleneck | LW
BLOCK_TYPES: dict[str, type] = {"conv": Conv, "basic": Basic, "bottleneck": Bottleneck, "lw": LW}


HEAD_POOLS = ("gap", "gmp", "flatten")
GLOBAL_POOLS = ("gap", "gmp")  # pool the map to one vector: the head's cost and the input size are free


@dataclass(frozen=True)
class Head:
    """Classifier head: ``gap`` = global-average-pool then ``fc`` hidden layers then linear;
    ``gmp`` = global-max-pool instead (keeps a small defect's one strong response; it fitted line
    data better at 40 epochs but not end to end, docs/line-data.md); ``flatten`` = flatten the final map then
    ``fc`` hidden layers (Kim's FC-4096) then linear."""

    pool: str = "gap"
    fc: tuple[int, ...] = ()
    dropout: float = 0.0


@dataclass(frozen=True)
class Decoder:
    """Huang et al.'s segmentation decoder (their section 3.3 and figure 3), in place of the head: an ASPP
    on the backbone's last map (a 1x1 branch and, per atrous rate, a depthwise-separable 3x3 branch, each
    ``width`` wide, concatenated and projected by a 1x1), bilinear upsampling to the map of stage ``tap``,
    concatenated with that stage's output reduced to ``skip`` channels by a 1x1, a 1x1 fuse to ``width``,
    a 1x1 per-pixel classifier, and bilinear upsampling to the input. BN + ReLU after every conv but the
    classifier. ``tap=-1``: no shortcut (the classifier works on the ASPP's map)."""

    width: int = 32
    rates: tuple[int, ...] = (6, 12, 18)
    tap: int = 0
    skip: int = 16


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: input, stem, stages of blocks, and a classifier head or (segmentation) a
    decoder; ``num_classes`` counts mask classes, background included, for a decoder."""

    in_channels: int
    input_size: int
    num_classes: int
    stem: tuple[Block, ...]
    stages: tuple[tuple[Block, ...], ...]
    head: Head = Head()
    name: str = ""
    decoder: Decoder | None = None

    @property
    def segments(self) -> bool:
        """A per-pixel (segmentation) network: a decoder instead of the classifier head."""
        return self.decoder is not None

    # ---- traversal -------------------------------------------------------------------
    def blocks(self) -> list[tuple[str, Block]]:
        """Every block with its field path (``stem[0]``, ``stages[1][2]``), in forward order."""
        out = [(f"stem[{i}]", b) for i, b in enumerate(self.stem)]
        for s, stage in enumerate(self.stages):
            out += [(f"stages[{s}][{i}]", b) for i, b in enumerate(stage)]
        return out

    def map_blocks(self, fn) -> ArchSpec:
        """A copy with every block replaced by ``fn(block)`` (used by the budget fitter)."""
        return dataclasses.replace(
            self,
            stem=tuple(fn(b) for b in self.stem),
            stages=tuple(tuple(fn(b) for b in st) for st in self.stages),
        )

    # ---- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "stem": [_block_dict(b) for b in self.stem],
            "stages": [[_block_dict(b) for b in st] for st in self.stages],
            "head": {"pool": self.head.pool, "fc": list(self.head.fc), "dropout": self.head.dropout},
            **({} if self.decoder is None else {"decoder": {
                "width": self.decoder.width, "rates": list(self.decoder.rates), "tap": self.decoder.tap,
                "skip": self.decoder.skip}}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any) -> ArchSpec:
        return _parse_spec(d)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"spec is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return _parse_spec(d)

    def at_size(self, input_size: int) -> ArchSpec:
        """The same architecture at another input size (a search trains at a proxy size, the final
        phase and the export at the data's size): the weights fit either way."""
        if input_size == self.input_size:
            return self
        return ArchSpec.from_dict({**self.to_dict(), "input_size": input_size})

    def digest(self) -> str:
        """Short content hash of the architecture (name excluded): identifies a spec in trials."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _block_dict(b: Block) -> dict[str, Any]:
    d = {"type": b.type}
    d.update({f.name: getattr(b, f.name) for f in fields(b) if f.name != "type"})
    return d


# ---- validation ---------------------------------------------------------------------


def _int(d: dict, key: str, where: str, lo: int, hi: int, default: Any = None) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}.{key}: expected an integer, got {v!r}")
    if not lo <= v <= hi:
        raise SpecError(f"{where}.{key}: {v} is outside the allowed range {lo}..{hi}")
    return v


def _check_keys(d: Any, allowed: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _parse_block(d: Any, where: str) -> Block:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {type(d).__name__}")
    kind = d.get("type")
    if kind not in BLOCK_TYPES:
        raise SpecError(f"{where}.type: unknown block type {kind!r} (one of {', '.join(BLOCK_TYPES)})")
    cls = BLOCK_TYPES[kind]
    names = {f.name for f in fields(cls)}
    _check_keys(d, names, where)
    kw: dict[str, Any] = {"out": _int(d, "out", where, 1, MAX_WIDTH)}
    if "stride" in names:
        kw["stride"] = _int(d, "stride", where, 1, 2, 1)
    if "kernel" in names:
        kw["kernel"] = _int(d, "kernel", where, 1, MAX_KERNEL, 3)
        if kw["kernel"] % 2 == 0:
            raise SpecError(f"{where}.kernel: {kw['kernel']} must be odd ('same' padding)")
    if kind == "bottleneck":
        kw["expansion"] = _int(d, "expansion", where, 1, 8, 4)
    if kind == "conv":
        act = d.get("act", "relu")
        if act not in ACTIVATIONS:
            raise SpecError(f"{where}.act: unknown activation {act!r} (one of {', '.join(ACTIVATIONS)})")
        norm = d.get("norm", True)
        if not isinstance(norm, bool):
            raise SpecError(f"{where}.norm: expected true or false, got {norm!r}")
        pool = _int(d, "pool", where, 0, 3, 0)
        if pool == 1:
            raise SpecError(f"{where}.pool: 1 is not a pool; use 0 (none), 2 or 3")
        kw.update(act=act, norm=norm, pool=pool)
    return cls(**kw)


def _parse_head(d: Any) -> Head:
    _check_keys(d, {"pool", "fc", "dropout"}, "head")
    pool = d.get("pool", "gap")
    if pool not in HEAD_POOLS:
        raise SpecError(f"head.pool: {pool!r} must be one of {', '.join(HEAD_POOLS)}")
    fc = d.get("fc", [])
    if not isinstance(fc, list) or len(fc) > 4:
        raise SpecError(f"head.fc: expected a list of at most 4 hidden widths, got {fc!r}")
    for i, w in enumerate(fc):
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_FC:
            raise SpecError(f"head.fc[{i}]: expected an integer in 1..{MAX_FC}, got {w!r}")
    dropout = d.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise SpecError(f"head.dropout: expected a number in [0, 1), got {dropout!r}")
    return Head(pool=pool, fc=tuple(fc), dropout=float(dropout))


def _parse_decoder(d: Any, stages: int) -> Decoder:
    _check_keys(d, {"width", "rates", "tap", "skip"}, "decoder")
    rates = d.get("rates", [6, 12, 18])
    if (not isinstance(rates, list) or len(rates) > 4
            or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 36 for r in rates)):
        raise SpecError(f"decoder.rates: expected a list of at most 4 atrous rates in 1..36, got {rates!r}")
    tap = d.get("tap", 0)
    if isinstance(tap, bool) or not isinstance(tap, int) or not -1 <= tap < stages:
        raise SpecError(f"decoder.tap: expected -1 (no shortcut) or a stage index in 0..{stages - 1}, got {tap!r}")
    return Decoder(_int(d, "width", "decoder", 1, MAX_WIDTH, 32), tuple(rates), tap,
                   _int(d, "skip", "decoder", 1, MAX_WIDTH, 16))


def _parse_spec(d: Any) -> ArchSpec:
    _check_keys(d, {"name", "in_channels", "input_size", "num_classes", "stem", "stages", "head", "decoder"},
                "spec")
    for key in ("in_channels", "input_size", "num_classes", "stem", "stages"):
        if key not in d:
            raise SpecError(f"spec.{key}: missing")
    name = d.get("name", "")
    if not isinstance(name, str):
        raise SpecError(f"spec.name: expected a string, got {name!r}")
    in_ch = _int(d, "in_channels", "spec", 1, 3)
    if in_ch == 2:
        raise SpecError("spec.in_channels: 2 is not supported; use 1 (grayscale) or 3 (RGB)")
    size = _int(d, "input_size", "spec", MIN_INPUT, MAX_INPUT)
    classes = _int(d, "num_classes", "spec", 2, MAX_CLASSES)
    if not isinstance(d["stem"], list):
        raise SpecError("spec.stem: expected a list of blocks")
    if not isinstance(d["stages"], list) or not all(isinstance(s, list) for s in d["stages"]):
        raise SpecError("spec.stages: expected a list of lists of blocks")
    stem = tuple(_parse_block(b, f"stem[{i}]") for i, b in enumerate(d["stem"]))
    stages = tuple(
        tuple(_parse_block(b, f"stages[{s}][{i}]") for i, b in enumerate(st)) for s, st in enumerate(d["stages"])
    )
    decoder = None if d.get("decoder") is None else _parse_decoder(d["decoder"], len(stages))
    spec = ArchSpec(in_ch, size, classes, stem, stages, _parse_head(d.get("head", {})), name, decoder)
    validate(spec)
    return spec


def validate(spec: ArchSpec) -> ArchSpec:
    """Check whole-network constraints (block count, map never below 1 pixel); return the spec."""
    blocks = spec.blocks()
    if not blocks:
        raise SpecError("spec.stem: a network needs at least one block")
    if len(blocks) > MAX_BLOCKS:
        raise SpecError(f"spec.stages: {len(blocks)} blocks is more than the maximum {MAX_BLOCKS}")
    if spec.decoder is not None:
        if not -1 <= spec.decoder.tap < len(spec.stages):
            raise SpecError(f"decoder.tap: {spec.decoder.tap} is not -1 or a stage index in 0..{len(spec.stages) - 1}")
        if spec.head != Head():
            raise SpecError("head: a decoder replaces the classifier head; leave head out of a segmentation spec")
    feature_sizes(spec, spec.input_size)
    return spec


def tap_point(spec: ArchSpec) -> int | None:
    """Index (in ``blocks()`` order) of the block whose output the decoder's shortcut takes: the last
    block of stage ``decoder.tap`` (or of the nearest non-empty stage before it); None without one."""
    if spec.decoder is None or spec.decoder.tap < 0:
        return None
    end = len(spec.stem) + sum(len(st) for st in spec.stages[: spec.decoder.tap + 1]) - 1
    return end if end >= 0 else None


def out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv with this stride: ceil(size / stride)."""
    return -(-size // stride)


def pool_size(size: int, pool: int) -> int:
    """Spatial size after the max-pool of a Conv block (2: 2x2/2 floor; 3: 3x3/2 pad 1)."""
    if pool == 2:
        return size // 2
    if pool == 3:
        return (size - 1) // 2 + 1
    return size


def feature_sizes(spec: ArchSpec, input_size: int) -> list[int]:
    """Output map size after each block; raises SpecError naming the block that shrinks it below 1."""
    size, sizes = input_size, []
    for where, b in spec.blocks():
        if b.stride > 1 and size < 2:
            raise SpecError(f"{where}.stride: the feature map would shrink below 1 pixel at input size {input_size}")
        size = out_size(size, b.stride)
        if isinstance(b, Conv):
            size = pool_size(size, b.pool)
        if size < 1:
            raise SpecError(f"{where}.stride: the feature map shrinks below 1 pixel at input size {input_size}")
        sizes.append(size)
    return sizes


def load_spec(path: str) -> ArchSpec:
    """Read and validate a spec file; a missing or unreadable file is a SpecError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; pass the path of an ArchSpec JSON file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read it ({e.__class__.__name__}); pass a readable JSON file") from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
