"""The weight-sharing supernet of a space, and `extract`, which turns one of its subnets into a static model.

`Supernet(space)(x, arch)` runs subnet `arch` — the arch is an argument, never hidden module state (OFA keeps mutable
`active_*` attributes instead), so one supernet can serve several archs at once (sandwich training, threads, tests).
Elastic depth keeps the first `d` layers of a stage; elastic resolution is the input size (the caller resizes).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from hwnas.blocks import build_block, build_model, init_weights
from hwnas.blocks.layers import MBConv
from hwnas.errors import HwnasError
from hwnas.space import Arch, LayerChoice, SpaceSpec, check_arch, first_block, head_block, layer_block, stem_block
from hwnas.supernet.elastic import ElasticMBConv, IrWeights, slice_ir

__all__ = ["Supernet", "extract", "copy_ir_weights"]


class Supernet(nn.Module):
    """Stem, first block and head are static (built by `hwnas.blocks`); each stage holds `max(depths)` elastic layers."""

    def __init__(self, space: SpaceSpec) -> None:
        super().__init__()
        self.space = space
        res = max(space.resolutions)
        self.stem = build_block(stem_block(space, res))
        self.first = build_block(first_block(space, res))
        stages = []
        for i, stage in enumerate(space.stages):
            top = LayerChoice(max(stage.kernels), max(stage.expands))
            layers = [
                ElasticMBConv(layer_block(space, i, j, top, in_hw=res), kernels=stage.kernels, expands=stage.expands)
                for j in range(max(stage.depths))
            ]
            stages.append(nn.ModuleList(layers))
        self.stages = nn.ModuleList(stages)
        self.head = build_block(head_block(space, res))
        init_weights(self.stem)
        init_weights(self.first)
        init_weights(self.head)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:  # type: ignore[override]
        if len(arch.stages) != len(self.stages):
            raise HwnasError(
                f"arch {arch} has {len(arch.stages)} stages, supernet of {self.space.name} has {len(self.stages)}"
            )
        x = self.first(self.stem(x))
        for layers, choices in zip(self.stage_layers(), arch.stages):
            for layer, choice in zip(layers, choices):
                x = layer(x, choice)
        return self.head(x)  # type: ignore[no-any-return]

    def stage_layers(self) -> list[list[ElasticMBConv]]:
        """The elastic layers of each stage (`self.stages`, typed)."""
        return [[cast(ElasticMBConv, m) for m in cast(nn.ModuleList, stage)] for stage in self.stages]

    def elastic_layers(self) -> list[ElasticMBConv]:
        return [layer for stage in self.stage_layers() for layer in stage]


def _bn_copy(bn: nn.Module, params: tuple[torch.Tensor, ...]) -> None:
    assert isinstance(bn, nn.BatchNorm2d)
    for dest, src in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), params):
        dest.copy_(src)  # type: ignore[union-attr]


def _conv_bn(seq: nn.Module | None) -> tuple[nn.Conv2d, nn.Module]:
    """The conv and BN of a `conv_bn_act` sequence."""
    assert isinstance(seq, nn.Sequential)
    conv = seq[0]
    assert isinstance(conv, nn.Conv2d)
    return conv, seq[1]


@torch.no_grad()
def copy_ir_weights(block: nn.Module, weights: IrWeights) -> None:
    """Copy one choice's sliced weights into a static `hwnas.blocks.MBConv` built for it."""
    assert isinstance(block, MBConv)
    if weights.expand_w is not None:
        conv, bn = _conv_bn(block.expand)
        conv.weight.copy_(weights.expand_w)
        assert weights.expand_bn is not None
        _bn_copy(bn, weights.expand_bn)
    conv, bn = _conv_bn(block.dw)
    conv.weight.copy_(weights.dw_w)
    _bn_copy(bn, weights.dw_bn)
    if weights.se is not None:
        assert block.se is not None
        fc1_w, fc1_b, fc2_w, fc2_b = weights.se
        block.se.fc1.weight.copy_(fc1_w)
        block.se.fc1.bias.copy_(fc1_b)  # type: ignore[union-attr]
        block.se.fc2.weight.copy_(fc2_w)
        block.se.fc2.bias.copy_(fc2_b)  # type: ignore[union-attr]
    conv, bn = _conv_bn(block.project)
    conv.weight.copy_(weights.project_w)
    _bn_copy(bn, weights.project_bn)


@torch.no_grad()
def extract(supernet: Supernet, arch: Arch) -> nn.Sequential:
    """The static model of `arch` (same module tree as `build_model`) holding the supernet's sliced weights.

    Returned in eval mode on the supernet's device; its eval output equals `supernet(x, arch)` in eval mode.
    """
    space = supernet.space
    check_arch(space, arch)
    param = next(supernet.parameters())
    model = build_model(space, arch).to(device=param.device, dtype=param.dtype)
    model[0].load_state_dict(supernet.stem.state_dict())
    model[1].load_state_dict(supernet.first.state_dict())
    index = 2
    for layers, choices in zip(supernet.stage_layers(), arch.stages):
        for layer, choice in zip(layers, choices):
            copy_ir_weights(model[index], slice_ir(layer, choice))
            index += 1
    model[index].load_state_dict(supernet.head.state_dict())
    return model.eval()
