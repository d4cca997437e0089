"""Whole static networks: an `nn.Sequential` of `build_block` modules, one per `BlockSpec` of the arch."""

from __future__ import annotations

from torch import nn

from hwnas.blocks.layers import build_block
from hwnas.space import Arch, SpaceSpec, blocks_of

__all__ = ["build_model", "init_weights"]


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs, unit BN, small-normal linear layers (torchvision's MobileNetV3 init)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build_model(space: SpaceSpec, arch: Arch) -> nn.Sequential:
    """The static network of `arch`; child `i` is block `i` of `blocks_of(space, arch)`."""
    model = nn.Sequential(*(build_block(spec) for spec in blocks_of(space, arch)))
    init_weights(model)
    return model
