"""The one architecture encoding: `BlockSpec` (an op signature, the LUT key) and `Arch` (a point of a search space).

Both are frozen and hashable, and each has a short canonical string form that round-trips: ``Arch.parse(str(a)) == a``.
The strings are what the CLI takes, what LUT rows, search logs, checkpoints and model cards store — nothing else is.

Arch string:   ``r160/k3e4,k5e6/k7e3,k3e3,k5e4/k3e6,k3e6/k5e4,k5e4,k7e6/k3e3,k3e3``
               resolution, then one ``/``-separated group per elastic stage, one ``kKeE`` token per kept layer.
Block string:  ``ir_k5_e6_c40_s2_se_hs`` (op, kernel, expand, out channels, stride, [se], activation);
               ``conv_k3_c16_s2_hs`` for the stem, ``head_e6_f1280_c10_hs`` for the classifier head.
LUT key:       ``{h}x{w}x{in_ch}:{block string}`` — see `BlockSpec.key`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from hwnas.errors import HwnasError

__all__ = ["Op", "Act", "OPS", "ACTS", "BlockSpec", "LayerChoice", "Arch", "make_divisible", "GRAPH_REVISION"]

# Which graph a BlockSpec is built into (hwnas.blocks) and exported as: a latency table keyed by BlockSpec records it,
# because a block's time depends on its operators, not only on its math. Bump it whenever an exported block's operators
# change, so that tables timed on the old graph are recognised as stale. Kept here, torch-free, for the LUT loader.
# 2: squeeze-excite pools with GlobalAveragePool instead of ReduceMean (tables without the field are revision 1).
GRAPH_REVISION = 2

Op = Literal["conv", "ir", "head"]
Act = Literal["re", "hs"]
OPS: tuple[Op, ...] = ("conv", "ir", "head")
ACTS: tuple[Act, ...] = ("re", "hs")

_MAX_KERNEL = 11
_MAX_EXPAND = 12
_MAX_RESOLUTION = 2048
_MAX_CH = 100_000


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10% (the MobileNet convention)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """Signature of one static block: everything its latency depends on, nothing derived.

    `expand` is the MBConv expand ratio (`ir`) or the head's 1x1 widening ratio (`head`); `feat_ch` is the head's
    feature width before the classifier (0 for other ops). `in_hw` is the square input size the block sees.
    """

    op: Op
    in_ch: int
    out_ch: int
    kernel: int = 1
    expand: int = 1
    stride: int = 1
    se: bool = False
    act: Act = "re"
    in_hw: int = 1
    feat_ch: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise HwnasError(f"unknown op {self.op!r}; valid ops: {', '.join(OPS)}")
        if self.act not in ACTS:
            raise HwnasError(f"unknown activation {self.act!r}; valid: {', '.join(ACTS)}")
        for name in ("in_ch", "out_ch", "in_hw", "expand"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_CH:
                raise HwnasError(f"block {name} must be an integer in 1..{_MAX_CH}, got {value!r}")
        if not isinstance(self.kernel, int) or self.kernel % 2 == 0 or not 1 <= self.kernel <= _MAX_KERNEL:
            raise HwnasError(f"block kernel must be odd in 1..{_MAX_KERNEL}, got {self.kernel!r}")
        if self.stride not in (1, 2):
            raise HwnasError(f"block stride must be 1 or 2, got {self.stride!r}")
        if self.op == "head" and self.feat_ch < 1:
            raise HwnasError("head block needs feat_ch >= 1")
        if self.op != "head" and self.feat_ch != 0:
            raise HwnasError(f"feat_ch is only meaningful for the head, got {self.feat_ch} for {self.op}")

    @property
    def mid_ch(self) -> int:
        """Hidden width: MBConv expansion (1 when expand == 1) or the head's widened channels."""
        if self.op == "ir" and self.expand == 1:
            return self.in_ch
        if self.op == "conv":
            return self.out_ch
        return make_divisible(self.in_ch * self.expand)

    @property
    def se_ch(self) -> int:
        """Squeeze-excite bottleneck width (OFA / MobileNetV3: a quarter of the hidden width, divisible by 8)."""
        return make_divisible(self.mid_ch // 4)

    @property
    def out_hw(self) -> int:
        if self.op == "head":
            return 1
        return (self.in_hw + self.stride - 1) // self.stride

    @property
    def has_residual(self) -> bool:
        return self.op == "ir" and self.stride == 1 and self.in_ch == self.out_ch

    def __str__(self) -> str:
        if self.op == "conv":
            return f"conv_k{self.kernel}_c{self.out_ch}_s{self.stride}_{self.act}"
        if self.op == "head":
            return f"head_e{self.expand}_f{self.feat_ch}_c{self.out_ch}_{self.act}"
        se = "_se" if self.se else ""
        return f"ir_k{self.kernel}_e{self.expand}_c{self.out_ch}_s{self.stride}{se}_{self.act}"

    @property
    def key(self) -> str:
        """The LUT key: input shape + op signature. Two layers with equal keys share one LUT row."""
        return f"{self.in_hw}x{self.in_hw}x{self.in_ch}:{self}"

    @classmethod
    def parse_key(cls, key: str) -> BlockSpec:
        """Inverse of `key` (used when importing tables measured elsewhere)."""
        m = _KEY_RE.fullmatch(key)
        if not m:
            raise HwnasError(
                f"bad LUT key {key!r}; expected e.g. '56x56x24:ir_k5_e6_c40_s2_se_hs' or '224x224x3:conv_k3_c16_s2_hs'"
            )
        h, w, in_ch, body = int(m["h"]), int(m["w"]), int(m["in_ch"]), m["body"]
        if h != w:
            raise HwnasError(f"LUT key {key!r}: only square inputs are supported")
        if b := _IR_RE.fullmatch(body):
            spec = cls("ir", in_ch, int(b["c"]), int(b["k"]), int(b["e"]), int(b["s"]), bool(b["se"]), b["act"], h)  # type: ignore[arg-type]
        elif b := _CONV_RE.fullmatch(body):
            spec = cls("conv", in_ch, int(b["c"]), int(b["k"]), 1, int(b["s"]), False, b["act"], h)  # type: ignore[arg-type]
        elif b := _HEAD_RE.fullmatch(body):
            spec = cls("head", in_ch, int(b["c"]), 1, int(b["e"]), 1, False, b["act"], h, int(b["f"]))  # type: ignore[arg-type]
        else:
            raise HwnasError(f"bad block {body!r} in LUT key {key!r}; expected e.g. 'ir_k5_e6_c40_s2_se_hs'")
        if spec.key != key:
            raise HwnasError(f"LUT key {key!r} is not canonical; canonical form: {spec.key!r}")
        return spec


_N = r"[1-9][0-9]{0,5}"
_KEY_RE = re.compile(rf"(?P<h>{_N})x(?P<w>{_N})x(?P<in_ch>{_N}):(?P<body>[a-z0-9_]+)")
_IR_RE = re.compile(rf"ir_k(?P<k>{_N})_e(?P<e>{_N})_c(?P<c>{_N})_s(?P<s>[12])(?P<se>_se)?_(?P<act>re|hs)")
_CONV_RE = re.compile(rf"conv_k(?P<k>{_N})_c(?P<c>{_N})_s(?P<s>[12])_(?P<act>re|hs)")
_HEAD_RE = re.compile(rf"head_e(?P<e>{_N})_f(?P<f>{_N})_c(?P<c>{_N})_(?P<act>re|hs)")


@dataclass(frozen=True, slots=True, order=True)
class LayerChoice:
    """The searched values of one elastic MBConv layer. String form ``k5e6``."""

    kernel: int
    expand: int

    def __post_init__(self) -> None:
        if (
            not isinstance(self.kernel, int)
            or isinstance(self.kernel, bool)
            or self.kernel % 2 == 0
            or not 1 <= self.kernel <= _MAX_KERNEL
        ):
            raise HwnasError(f"kernel must be odd in 1..{_MAX_KERNEL}, got {self.kernel!r}")
        if not isinstance(self.expand, int) or isinstance(self.expand, bool) or not 1 <= self.expand <= _MAX_EXPAND:
            raise HwnasError(f"expand must be an integer in 1..{_MAX_EXPAND}, got {self.expand!r}")

    def __str__(self) -> str:
        return f"k{self.kernel}e{self.expand}"


_LAYER_RE = re.compile(r"k(?P<k>[0-9]+)e(?P<e>[0-9]+)")
_ARCH_EXAMPLE = "r160/k3e4,k5e6/k7e3,k3e3,k5e4/k3e6,k3e6/k5e4,k5e4,k7e6/k3e3,k3e3"


@dataclass(frozen=True, slots=True)
class Arch:
    """A subnet: input resolution plus, per elastic stage, the kept layers (depth = number of layers)."""

    resolution: int
    stages: tuple[tuple[LayerChoice, ...], ...]

    def __post_init__(self) -> None:
        if (
            not isinstance(self.resolution, int)
            or isinstance(self.resolution, bool)
            or not 8 <= self.resolution <= _MAX_RESOLUTION
        ):
            raise HwnasError(f"resolution must be an integer in 8..{_MAX_RESOLUTION}, got {self.resolution!r}")
        if not isinstance(self.stages, tuple) or not self.stages:
            raise HwnasError("an arch needs at least one stage")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, tuple) or not stage:
                raise HwnasError(f"stage {i + 1} of an arch needs at least one layer")
            if not all(isinstance(layer, LayerChoice) for layer in stage):
                raise HwnasError(f"stage {i + 1} must hold LayerChoice values")

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(stage) for stage in self.stages)

    @property
    def layers(self) -> tuple[LayerChoice, ...]:
        """All kept layers, stage after stage."""
        return tuple(layer for stage in self.stages for layer in stage)

    def __str__(self) -> str:
        return f"r{self.resolution}/" + "/".join(",".join(str(layer) for layer in stage) for stage in self.stages)

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Parse the canonical string. Near-misses (case, spaces, leading zeros) are rejected, naming the canonical form."""
        if not isinstance(text, str):
            raise HwnasError(f"arch must be a string, got {type(text).__name__}")
        canonical = _parse_lenient(text)
        if str(canonical) != text:
            raise HwnasError(f"arch {text!r} is not canonical; write it as {str(canonical)!r}")
        return canonical


def _parse_lenient(text: str) -> Arch:
    squashed = "".join(text.split()).lower()
    parts = squashed.split("/")
    head = parts[0]
    if len(text) > 10_000:
        raise HwnasError(f"arch string is too long ({len(text)} chars); expected e.g. {_ARCH_EXAMPLE!r}")
    if not head.startswith("r") or not head[1:].isdigit() or len(head) > 6:
        raise HwnasError(
            f"arch {text!r} must start with the resolution, e.g. 'r160/...'; expected e.g. {_ARCH_EXAMPLE!r}"
        )
    if len(parts) < 2:
        raise HwnasError(f"arch {text!r} has no stages; expected e.g. {_ARCH_EXAMPLE!r}")
    stages = []
    for i, group in enumerate(parts[1:]):
        layers = []
        for token in group.split(","):
            m = _LAYER_RE.fullmatch(token)
            if not m or len(m["k"]) > 3 or len(m["e"]) > 3:
                raise HwnasError(
                    f"bad layer {token!r} in stage {i + 1} of arch {text!r}; a layer is 'k<kernel>e<expand>', e.g. 'k5e6'"
                )
            layers.append(LayerChoice(int(m["k"]), int(m["e"])))
        stages.append(tuple(layers))
    return Arch(int(head[1:]), tuple(stages))
