"""Pure functions over a space and its archs: membership, sampling, mutation, crossover, extremes, block expansion.

Randomness always comes in as a `random.Random`; nothing here touches a global RNG or mutates its inputs.
"""

from __future__ import annotations

import itertools
import math
import random

from hwnas.errors import HwnasError
from hwnas.space.presets import SpaceSpec, StageSpec
from hwnas.space.spec import Arch, BlockSpec, LayerChoice

__all__ = [
    "layer_choices",
    "contains",
    "check_arch",
    "sample",
    "mutate",
    "crossover",
    "largest",
    "smallest",
    "blocks_of",
    "stem_block",
    "first_block",
    "layer_block",
    "head_block",
    "distinct_blocks",
    "space_size",
    "stage_input_hw",
]


def layer_choices(stage: StageSpec) -> tuple[LayerChoice, ...]:
    """Every (kernel, expand) a layer of `stage` may take, in a fixed order (kernel-major)."""
    return tuple(LayerChoice(k, e) for k, e in itertools.product(stage.kernels, stage.expands))


def _why_not(space: SpaceSpec, arch: Arch) -> str | None:
    if arch.resolution not in space.resolutions:
        return f"resolution {arch.resolution} not in {list(space.resolutions)}"
    if len(arch.stages) != len(space.stages):
        return f"{len(arch.stages)} stages, the space has {len(space.stages)}"
    for i, (layers, stage) in enumerate(zip(arch.stages, space.stages)):
        if len(layers) not in stage.depths:
            return f"stage {i + 1} has depth {len(layers)}, allowed {list(stage.depths)}"
        for j, layer in enumerate(layers):
            if layer.kernel not in stage.kernels:
                return f"stage {i + 1} layer {j + 1}: kernel {layer.kernel} not in {list(stage.kernels)}"
            if layer.expand not in stage.expands:
                return f"stage {i + 1} layer {j + 1}: expand {layer.expand} not in {list(stage.expands)}"
    return None


def contains(space: SpaceSpec, arch: Arch) -> bool:
    return _why_not(space, arch) is None


def check_arch(space: SpaceSpec, arch: Arch) -> Arch:
    """Return `arch` if it belongs to `space`, else raise naming the first offending field."""
    reason = _why_not(space, arch)
    if reason is not None:
        raise HwnasError(
            f"arch {arch} is not in space {space.name}: {reason}; see 'hwnas space show --space {space.name}'"
        )
    return arch


def _stage_arch(stage: StageSpec, depth: int, rng: random.Random) -> tuple[LayerChoice, ...]:
    return tuple(LayerChoice(rng.choice(stage.kernels), rng.choice(stage.expands)) for _ in range(depth))


def sample(space: SpaceSpec, rng: random.Random, *, resolution: int | None = None) -> Arch:
    """Uniform over resolution, per-stage depth and per-layer kernel/expand."""
    res = resolution if resolution is not None else rng.choice(space.resolutions)
    stages = tuple(_stage_arch(stage, rng.choice(stage.depths), rng) for stage in space.stages)
    return check_arch(space, Arch(res, stages))


def mutate(space: SpaceSpec, arch: Arch, rng: random.Random, *, prob: float = 0.1) -> Arch:
    """Resample each decision (resolution, each depth, each layer) independently with probability `prob`."""
    res = rng.choice(space.resolutions) if rng.random() < prob else arch.resolution
    stages = []
    for layers, stage in zip(arch.stages, space.stages):
        depth = rng.choice(stage.depths) if rng.random() < prob else len(layers)
        padded = layers + _stage_arch(stage, max(0, depth - len(layers)), rng)
        new = tuple(
            LayerChoice(rng.choice(stage.kernels), rng.choice(stage.expands)) if rng.random() < prob else layer
            for layer in padded[:depth]
        )
        stages.append(new)
    return Arch(res, tuple(stages))


def crossover(space: SpaceSpec, a: Arch, b: Arch, rng: random.Random) -> Arch:
    """Uniform crossover: each decision taken from either parent (missing layers filled from the other parent or sampled)."""
    res = rng.choice((a.resolution, b.resolution))
    stages = []
    for la, lb in zip(a.stages, b.stages):
        depth = rng.choice((len(la), len(lb)))
        layers = []
        for j in range(depth):
            options = [x[j] for x in (la, lb) if j < len(x)]
            layers.append(rng.choice(options))
        stages.append(tuple(layers))
    return Arch(res, tuple(stages))


def largest(space: SpaceSpec, *, resolution: int | None = None) -> Arch:
    res = resolution if resolution is not None else max(space.resolutions)
    return Arch(res, tuple((LayerChoice(max(s.kernels), max(s.expands)),) * max(s.depths) for s in space.stages))


def smallest(space: SpaceSpec, *, resolution: int | None = None) -> Arch:
    res = resolution if resolution is not None else min(space.resolutions)
    return Arch(res, tuple((LayerChoice(min(s.kernels), min(s.expands)),) * min(s.depths) for s in space.stages))


def _out_hw(in_hw: int, stride: int) -> int:
    return (in_hw + stride - 1) // stride


def stem_block(space: SpaceSpec, resolution: int) -> BlockSpec:
    return BlockSpec("conv", space.in_channels, space.stem_ch, 3, 1, space.stem_stride, False, "hs", resolution)


def first_block(space: SpaceSpec, resolution: int) -> BlockSpec:
    hw = _out_hw(resolution, space.stem_stride)
    return BlockSpec("ir", space.stem_ch, space.first_ch, 3, 1, 1, False, "re", hw)


def layer_block(space: SpaceSpec, stage_idx: int, layer_idx: int, choice: LayerChoice, *, in_hw: int) -> BlockSpec:
    """Signature of layer `layer_idx` of stage `stage_idx` with `choice`, seeing `in_hw` input (before its stride)."""
    stage = space.stages[stage_idx]
    in_ch = (
        (space.first_ch if stage_idx == 0 else space.stages[stage_idx - 1].out_ch) if layer_idx == 0 else stage.out_ch
    )
    stride = stage.stride if layer_idx == 0 else 1
    return BlockSpec("ir", in_ch, stage.out_ch, choice.kernel, choice.expand, stride, stage.se, stage.act, in_hw)


def stage_input_hw(space: SpaceSpec, resolution: int) -> tuple[int, ...]:
    """Input size of each stage's first layer at `resolution`."""
    hw = _out_hw(resolution, space.stem_stride)
    sizes = []
    for stage in space.stages:
        sizes.append(hw)
        hw = _out_hw(hw, stage.stride)
    return tuple(sizes)


def head_block(space: SpaceSpec, resolution: int) -> BlockSpec:
    hw = stage_input_hw(space, resolution)[-1]
    hw = _out_hw(hw, space.stages[-1].stride)
    return BlockSpec(
        "head", space.stages[-1].out_ch, space.num_classes, 1, space.head_expand, 1, False, "hs", hw, space.head_feat_ch
    )


def blocks_of(space: SpaceSpec, arch: Arch) -> tuple[BlockSpec, ...]:
    """The full static block sequence of `arch`: stem, first block, every kept layer, head."""
    check_arch(space, arch)
    blocks = [stem_block(space, arch.resolution), first_block(space, arch.resolution)]
    for i, (layers, in_hw) in enumerate(zip(arch.stages, stage_input_hw(space, arch.resolution))):
        for j, choice in enumerate(layers):
            blocks.append(
                layer_block(space, i, j, choice, in_hw=in_hw if j == 0 else _out_hw(in_hw, space.stages[i].stride))
            )
    blocks.append(head_block(space, arch.resolution))
    return tuple(blocks)


def distinct_blocks(space: SpaceSpec, resolutions: tuple[int, ...] | None = None) -> dict[int, tuple[BlockSpec, ...]]:
    """Every block signature the space can produce, per resolution (stem, first block, 2 positions × choices per stage, head)."""
    out: dict[int, tuple[BlockSpec, ...]] = {}
    for res in resolutions if resolutions is not None else space.resolutions:
        if res not in space.resolutions:
            raise HwnasError(f"resolution {res} not in space {space.name} ({list(space.resolutions)})")
        specs = [stem_block(space, res), first_block(space, res)]
        for i, in_hw in enumerate(stage_input_hw(space, res)):
            for choice in layer_choices(space.stages[i]):
                specs.append(layer_block(space, i, 0, choice, in_hw=in_hw))
                specs.append(layer_block(space, i, 1, choice, in_hw=_out_hw(in_hw, space.stages[i].stride)))
        specs.append(head_block(space, res))
        out[res] = tuple(dict.fromkeys(specs))
    return out


def space_size(space: SpaceSpec) -> int:
    """Number of distinct archs in the space."""
    total = 0
    for stage in space.stages:
        per_layer = len(stage.kernels) * len(stage.expands)
        total_stage = sum(per_layer**d for d in stage.depths)
        total = total_stage if total == 0 else total * total_stage
    return total * len(space.resolutions)


def log10_space_size(space: SpaceSpec) -> float:
    return math.log10(space_size(space))
