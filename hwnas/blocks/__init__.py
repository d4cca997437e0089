"""Static building blocks and whole static networks, built from `BlockSpec` / `Arch`."""

from hwnas.blocks.cost import arch_macs, arch_params, block_macs, block_params, count_macs
from hwnas.blocks.layers import Head, MBConv, SqueezeExcite, activation, build_block, conv_bn_act
from hwnas.blocks.model import build_model, init_weights

__all__ = [
    "arch_macs",
    "arch_params",
    "block_macs",
    "block_params",
    "count_macs",
    "Head",
    "MBConv",
    "SqueezeExcite",
    "activation",
    "build_block",
    "conv_bn_act",
    "build_model",
    "init_weights",
]
