"""Compute cost of blocks and archs: MACs (fvcore, the reference counter) and parameter counts.

MACs are counted per block signature and cached, so a population of archs is costed without re-tracing models; the sum
over blocks equals fvcore on the whole network because no op spans two blocks (tested).
"""

from __future__ import annotations

import functools
import logging
import warnings

import torch
from torch import nn

from hwnas.blocks.layers import build_block
from hwnas.space import Arch, BlockSpec, SpaceSpec, blocks_of

__all__ = ["count_macs", "block_macs", "block_params", "arch_macs", "arch_params"]


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at `input_shape`, counted by fvcore (conv, linear, matmul)."""
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's first import warns about torch.jit.script, its counting about ops
        from fvcore.nn import FlopCountAnalysis  # slow import; only needed here

        analysis = FlopCountAnalysis(model, torch.zeros(input_shape))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        return int(analysis.total())


@functools.lru_cache(maxsize=8192)
def block_macs(spec: BlockSpec) -> int:
    return count_macs(build_block(spec), (1, spec.in_ch, spec.in_hw, spec.in_hw))


@functools.lru_cache(maxsize=8192)
def block_params(spec: BlockSpec) -> int:
    return sum(p.numel() for p in build_block(spec).parameters())


def arch_macs(space: SpaceSpec, arch: Arch) -> int:
    return sum(block_macs(spec) for spec in blocks_of(space, arch))


def arch_params(space: SpaceSpec, arch: Arch) -> int:
    return sum(block_params(spec) for spec in blocks_of(space, arch))
