"""Search-space definitions: frozen `SpaceSpec` values and the named presets (`mbv3`, `mbv3-tiny`).

A space fixes everything that is not searched (stem, first block, stage widths/strides/activations/SE, head) and lists the
choices that are (resolution, per-stage depth, per-layer kernel and expand ratio). Its `space_hash` identifies it in LUT
metadata and checkpoints, so a table or a supernet built for one space can never be used silently with another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from hwnas.errors import HwnasError
from hwnas.space.spec import Act, make_divisible

__all__ = ["StageSpec", "SpaceSpec", "SPACE_NAMES", "get_space", "space_hash", "with_io"]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One elastic stage: fixed width, stride (first layer only), activation and SE; searched depth/kernel/expand."""

    out_ch: int
    stride: int
    act: Act
    se: bool
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SpaceSpec:
    """A MobileNetV3-like weight-sharing search space."""

    name: str
    in_channels: int
    num_classes: int
    resolutions: tuple[int, ...]
    stem_ch: int
    stem_stride: int
    first_ch: int
    stages: tuple[StageSpec, ...]
    head_expand: int
    head_feat_ch: int
    width: float = 1.0

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 2:
            raise HwnasError(f"space {self.name}: in_channels >= 1 and num_classes >= 2 required")
        if (
            not self.resolutions
            or any(r < 8 for r in self.resolutions)
            or list(self.resolutions) != sorted(set(self.resolutions))
        ):
            raise HwnasError(f"space {self.name}: resolutions must be distinct, ascending and >= 8")

    @property
    def max_depth(self) -> int:
        return max(max(stage.depths) for stage in self.stages)


def _mobilenet_v3_space(
    name: str,
    width: float,
    *,
    stage_ch: tuple[int, ...],
    in_channels: int,
    num_classes: int,
    resolutions: tuple[int, ...],
    stem_stride: int,
    head_expand: int,
    head_feat_ch: int,
) -> SpaceSpec:
    """The MobileNetV3 layout shared by the presets: strides 2/2/2/1/2, act re/re/hs/hs/hs, SE off/on/off/on/on."""
    ch = [make_divisible(c * width) for c in stage_ch]
    layout = zip(ch, (2, 2, 2, 1, 2), ("re", "re", "hs", "hs", "hs"), (False, True, False, True, True))
    stages = tuple(StageSpec(c, s, a, se, (2, 3, 4), (3, 5, 7), (3, 4, 6)) for c, s, a, se in layout)  # type: ignore[arg-type]
    return SpaceSpec(
        name=name,
        in_channels=in_channels,
        num_classes=num_classes,
        resolutions=resolutions,
        stem_ch=make_divisible(16 * width),
        stem_stride=stem_stride,
        first_ch=make_divisible(16 * width),
        stages=stages,
        head_expand=head_expand,
        head_feat_ch=make_divisible(head_feat_ch * max(1.0, width)),
        width=width,
    )


def _mbv3(width: float) -> SpaceSpec:
    """OFA's MobileNetV3 space (Cai et al., 2020): 5 elastic stages, k{3,5,7}, e{3,4,6}, d{2,3,4}, 128–224 px."""
    return _mobilenet_v3_space(
        "mbv3",
        width,
        stage_ch=(24, 40, 80, 112, 160),
        in_channels=3,
        num_classes=1000,
        resolutions=(128, 160, 192, 224),
        stem_stride=2,
        head_expand=6,
        head_feat_ch=1280,
    )


def _mbv3_tiny(width: float) -> SpaceSpec:
    """The same structure for 28–32 px images (Fashion-MNIST, CIFAR): stride-1 stem, narrow stages, 24–32 px.

    Sized so that 2 CPU cores train a supernet to useful accuracy in minutes: the largest subnet is 20 M MACs at
    32 px. Wider stages or larger inputs cost training throughput a run of minutes cannot spare, and inputs upsampled
    well beyond 28 px cost the most while carrying no information a 28 px image lacks.
    """
    return _mobilenet_v3_space(
        "mbv3-tiny",
        width,
        stage_ch=(16, 24, 32, 48, 64),
        in_channels=1,
        num_classes=10,
        resolutions=(24, 28, 32),
        stem_stride=1,
        head_expand=4,
        head_feat_ch=640,
    )


_PRESETS = {"mbv3": _mbv3, "mbv3-tiny": _mbv3_tiny}
SPACE_NAMES: tuple[str, ...] = tuple(_PRESETS)


def get_space(name: str, *, width: float = 1.0) -> SpaceSpec:
    """A preset by name; `width` scales every channel count (MobileNet width multiplier)."""
    if name not in _PRESETS:
        raise HwnasError(f"unknown space {name!r}; available spaces: {', '.join(SPACE_NAMES)}")
    if not 0.1 <= width <= 4.0:
        raise HwnasError(f"width multiplier must be in 0.1..4.0, got {width}")
    return _PRESETS[name](width)


def with_io(space: SpaceSpec, *, in_channels: int, num_classes: int) -> SpaceSpec:
    """The same space adapted to a dataset's image channels and class count (changes the stem, head and hash)."""
    return dataclasses.replace(space, in_channels=in_channels, num_classes=num_classes)


def space_hash(space: SpaceSpec) -> str:
    """Stable 12-hex-digit fingerprint of everything that defines the space."""
    blob = json.dumps(dataclasses.asdict(space), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
