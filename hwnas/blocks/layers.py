"""Static modules built from a `BlockSpec`: conv-bn-act, MBConv (with optional squeeze-excite), classifier head.

One builder for everything that is timed or shipped: LUT profiling blocks, extracted subnets and exported models all
come from `build_block`, so what is measured is exactly what is deployed. The modules mirror torchvision's
`Conv2dNormActivation` / `SqueezeExcitation` (same structure and parameter names) but are defined here: importing
`torchvision.ops` pulls in torch._dynamo and costs seconds on every command start.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.space.spec import Act, BlockSpec  # GRAPH_REVISION there says what these modules export to

__all__ = ["activation", "conv_bn_act", "SqueezeExcite", "MBConv", "Head", "build_block"]


def activation(act: Act | None) -> type[nn.Module] | None:
    return {"re": nn.ReLU, "hs": nn.Hardswish, None: None}[act]


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, groups: int = 1, act: Act | None
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) → BatchNorm → activation; children named 0, 1, 2."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    act_layer = activation(act)
    if act_layer is not None:
        layers.append(act_layer(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.; MobileNetV3 variant): pool → 1×1 fc1 → ReLU → 1×1 fc2 → hard-sigmoid → scale."""

    def __init__(self, channels: int, squeeze_ch: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_ch, 1)
        self.fc2 = nn.Conv2d(squeeze_ch, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the same mean, but exported as GlobalAveragePool, which onnxruntime's int8 quantizer covers; ReduceMean stays
        # fp32 between DequantizeLinear/QuantizeLinear pairs, so every SE block would pay a dequantize/quantize round
        # trip. GlobalAveragePool makes the int8 model faster and is no slower in fp32.
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        scale = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(scale))))
        return x * scale


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2/V3): 1×1 expand → k×k depthwise → [squeeze-excite] → 1×1 project (+ identity)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        mid = spec.mid_ch
        self.expand = conv_bn_act(spec.in_ch, mid, 1, act=spec.act) if spec.expand != 1 else None
        self.dw = conv_bn_act(mid, mid, spec.kernel, stride=spec.stride, groups=mid, act=spec.act)
        self.se = SqueezeExcite(mid, spec.se_ch) if spec.se else None
        self.project = conv_bn_act(mid, spec.out_ch, 1, act=None)
        self.residual = spec.has_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.residual else out


class Head(nn.Module):
    """1×1 widen (BN, act) → global pool → 1×1 feature conv (bias, act) → linear classifier (OFA's MobileNetV3 head)."""

    def __init__(self, spec: BlockSpec, *, dropout: float = 0.0) -> None:
        super().__init__()
        act = activation(spec.act)
        assert act is not None
        self.widen = conv_bn_act(spec.in_ch, spec.mid_ch, 1, act=spec.act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature = nn.Conv2d(spec.mid_ch, spec.feat_ch, 1, bias=True)
        self.feature_act = act(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(spec.feat_ch, spec.out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_act(self.feature(self.pool(self.widen(x))))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def build_block(spec: BlockSpec) -> nn.Module:
    match spec.op:
        case "conv":
            return conv_bn_act(spec.in_ch, spec.out_ch, spec.kernel, stride=spec.stride, act=spec.act)
        case "ir":
            return MBConv(spec)
        case "head":
            return Head(spec)
    raise AssertionError(f"unhandled op {spec.op}")
