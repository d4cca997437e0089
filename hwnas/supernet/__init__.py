"""Weight-sharing supernet: elastic MBConv layers, `Supernet(space)(x, arch)`, and `extract(supernet, arch)`."""

from hwnas.supernet.elastic import ElasticMBConv, IrWeights, reorder_channels, slice_ir, sliced_bn, transformed_kernel
from hwnas.supernet.supernet import Supernet, copy_ir_weights, extract

__all__ = [
    "ElasticMBConv",
    "IrWeights",
    "reorder_channels",
    "slice_ir",
    "sliced_bn",
    "transformed_kernel",
    "Supernet",
    "copy_ir_weights",
    "extract",
]
