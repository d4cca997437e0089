"""Elastic MBConv: one set of largest weights, sliced per call for any (kernel, expand) of its position.

The layer holds the weights of its largest choice. `slice_ir(layer, choice)` is the one pure function that turns those
weights into the static weights of a smaller choice; the supernet forward and `extract` both call it, so the trained
subnet and the shipped subnet cannot disagree.

- Kernel: OFA's kernel transform (Cai et al., 2020). A 5×5 kernel is the centre of the 7×7 passed through a learned 25×25
  matrix, a 3×3 the centre of that 5×5 through a 9×9 matrix (both start as identity), so small kernels are not forced to
  be plain crops of the large one.
- Expand: the first `mid_ch` hidden channels (OFA's channel slicing). `reorder_channels` sorts hidden channels by
  importance so the slices keep the most useful ones (OFA's `re_organize_middle_weights`).
- BN / SE: sliced parameters and running statistics (views, so BN updates land in the shared buffers).

Where this is faster than OFA's dynamic ops: a choice equal to the largest uses the stored tensors as they are (no slice,
no `.contiguous()` copy, no transform); weights are sliced along their first dimension wherever possible so a slice is a
view, not a copy; the kernel transform runs on the `mid_ch` channels actually used, once per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.space.spec import BlockSpec, LayerChoice, make_divisible
from hwnas.supernet.depthwise import depthwise_conv

__all__ = ["ElasticMBConv", "IrWeights", "slice_ir", "sliced_bn", "transformed_kernel", "reorder_channels", "pointwise"]


def _mid_ch(in_ch: int, expand: int) -> int:
    return in_ch if expand == 1 else make_divisible(in_ch * expand)


@dataclass(frozen=True)
class IrWeights:
    """The static weights of one MBConv choice, as views/tensors of the elastic layer's parameters."""

    mid_ch: int
    se_ch: int
    expand_w: torch.Tensor | None
    expand_bn: tuple[torch.Tensor, ...] | None  # weight, bias, running_mean, running_var
    dw_w: torch.Tensor
    dw_bn: tuple[torch.Tensor, ...]
    se: tuple[torch.Tensor, ...] | None  # fc1 w, fc1 b, fc2 w, fc2 b
    project_w: torch.Tensor
    project_bn: tuple[torch.Tensor, ...]


def _bn_params(bn: nn.BatchNorm2d, ch: int) -> tuple[torch.Tensor, ...]:
    tensors = (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    if ch == bn.num_features:
        return tensors  # type: ignore[return-value]
    return tuple(t[:ch] for t in tensors)  # type: ignore[index]


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of an SE 1×1 convolution (always built with one)."""
    assert conv.bias is not None
    return conv.bias


def transformed_kernel(layer: ElasticMBConv, kernel: int, mid_ch: int) -> torch.Tensor:
    """Depthwise kernel of size `kernel` for the first `mid_ch` channels (centre crops + learned transforms)."""
    weight = layer.dw_weight[:mid_ch] if mid_ch != layer.max_mid_ch else layer.dw_weight
    size = layer.max_kernel
    for smaller in layer.kernel_steps:
        if smaller < kernel:
            break
        start = (size - smaller) // 2
        crop = weight[:, :, start : start + smaller, start : start + smaller]
        matrix = layer.kernel_transforms[f"{size}to{smaller}"]
        weight = F.linear(crop.reshape(mid_ch, smaller * smaller), matrix).view(mid_ch, 1, smaller, smaller)
        size = smaller
    return weight


def slice_ir(layer: ElasticMBConv, choice: LayerChoice) -> IrWeights:
    """The weights of `choice` at this layer's position; shared by the supernet forward and `extract`."""
    mid = _mid_ch(layer.in_ch, choice.expand)
    se_ch = make_divisible(mid // 4)
    full = mid == layer.max_mid_ch
    expand_w = None
    expand_bn = None
    if layer.expand_weight is not None:
        expand_w = layer.expand_weight if full else layer.expand_weight[:mid]
        assert layer.expand_bn is not None
        expand_bn = _bn_params(layer.expand_bn, mid)
    se = None
    if layer.se_fc1 is not None and layer.se_fc2 is not None:
        fc1, fc2 = layer.se_fc1, layer.se_fc2
        b1, b2 = _bias(fc1), _bias(fc2)
        if full and se_ch == fc1.out_channels:
            se = (fc1.weight, b1, fc2.weight, b2)
        else:
            se = (fc1.weight[:se_ch, :mid], b1[:se_ch], fc2.weight[:mid, :se_ch], b2[:mid])
    return IrWeights(
        mid_ch=mid,
        se_ch=se_ch,
        expand_w=expand_w,
        expand_bn=expand_bn,
        dw_w=transformed_kernel(layer, choice.kernel, mid),
        dw_bn=_bn_params(layer.dw_bn, mid),
        se=se,
        project_w=layer.project_weight if full else layer.project_weight[:, :mid],
        project_bn=_bn_params(layer.project_bn, layer.out_ch),
    )


def sliced_bn(x: torch.Tensor, bn: nn.BatchNorm2d, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """`nn.BatchNorm2d.forward` on sliced parameters; running stats update in place (they are views of the buffers).

    Honours `momentum=None` (cumulative average), which BN recalibration relies on.
    """
    weight, bias, mean, var = params
    factor = 0.0
    if bn.training and bn.track_running_stats:
        assert bn.num_batches_tracked is not None
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, mean, var, weight, bias, bn.training, factor, bn.eps)


def pointwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1×1 convolution (no bias). On a channels_last input it runs as one matrix product over the NHWC view.

    Same result as `F.conv2d(x, weight)` (bit-identical in the tests) and the output stays channels_last, but forward +
    backward cost less: oneDNN's convolution backward pays a fixed per-call cost that a GEMM does not, and it dominates
    for the small 1×1 convolutions of mobile networks (most convolutions of an MBConv are 1×1).
    """
    if x.is_contiguous(memory_format=torch.channels_last):
        return F.linear(x.permute(0, 2, 3, 1), weight[:, :, 0, 0]).permute(0, 3, 1, 2)
    return F.conv2d(x, weight)


def _effective_kernel(kernel: torch.Tensor, hw: torch.Size) -> tuple[torch.Tensor, tuple[int, int]]:
    """The taps of a stride-1 'same' depthwise kernel that can touch the H×W map, and the padding that goes with them.

    A tap further than H-1 rows (W-1 columns) from the centre only ever multiplies zero padding, so dropping it gives
    the identical output and identical gradients for every other tap (its own gradient is exactly zero either way).
    Late stages run 5×5/7×7 kernels on 2×2 or 1×1 maps (mbv3 at 32 px, mbv3-tiny at 24–32 px), where oneDNN spends
    milliseconds per call on padding; the cropped kernel skips that work.
    """
    k_h, k_w = kernel.shape[-2:]
    crop_h, crop_w = max(0, k_h // 2 - (hw[0] - 1)), max(0, k_w // 2 - (hw[1] - 1))
    if crop_h or crop_w:
        kernel = kernel[:, :, crop_h : k_h - crop_h, crop_w : k_w - crop_w]
    return kernel, (k_h // 2 - crop_h, k_w // 2 - crop_w)


def _act(x: torch.Tensor, act: str) -> torch.Tensor:
    return F.relu(x, inplace=True) if act == "re" else F.hardswish(x, inplace=True)


class ElasticMBConv(nn.Module):
    """One MBConv position of a stage, holding the weights of its largest (kernel, expand) choice.

    Parameter layout follows the static `MBConv` (1×1 expand, k×k depthwise, optional SE, 1×1 project), stored as raw
    tensors plus BN modules so slices can be taken without module state.
    """

    def __init__(self, spec: BlockSpec, *, kernels: tuple[int, ...], expands: tuple[int, ...]) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.stride, self.act = spec.in_ch, spec.out_ch, spec.stride, spec.act
        self.residual = spec.has_residual
        self.max_kernel = max(kernels)
        self.kernel_steps = tuple(sorted(kernels, reverse=True))[1:]
        self.max_mid_ch = _mid_ch(spec.in_ch, max(expands))
        mid = self.max_mid_ch
        if max(expands) != 1:
            self.expand_weight: nn.Parameter | None = nn.Parameter(torch.empty(mid, spec.in_ch, 1, 1))
            self.expand_bn: nn.BatchNorm2d | None = nn.BatchNorm2d(mid)
        else:
            self.expand_weight, self.expand_bn = None, None
        self.dw_weight = nn.Parameter(torch.empty(mid, 1, self.max_kernel, self.max_kernel))
        self.dw_bn = nn.BatchNorm2d(mid)
        transforms = {}
        size = self.max_kernel
        for smaller in self.kernel_steps:
            transforms[f"{size}to{smaller}"] = nn.Parameter(torch.eye(smaller * smaller))
            size = smaller
        self.kernel_transforms = nn.ParameterDict(transforms)
        if spec.se:
            se_ch = make_divisible(mid // 4)
            self.se_fc1: nn.Conv2d | None = nn.Conv2d(mid, se_ch, 1)
            self.se_fc2: nn.Conv2d | None = nn.Conv2d(se_ch, mid, 1)
        else:
            self.se_fc1, self.se_fc2 = None, None
        self.project_weight = nn.Parameter(torch.empty(spec.out_ch, mid, 1, 1))
        self.project_bn = nn.BatchNorm2d(spec.out_ch)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same init as the static blocks (`hwnas.blocks.init_weights`): kaiming fan-out convs, unit BN."""
        for w in (self.expand_weight, self.dw_weight, self.project_weight):
            if w is not None:
                nn.init.kaiming_normal_(w, mode="fan_out")
        for fc in (self.se_fc1, self.se_fc2):
            if fc is not None:
                nn.init.kaiming_normal_(fc.weight, mode="fan_out")
                nn.init.zeros_(_bias(fc))

    def forward(self, x: torch.Tensor, choice: LayerChoice) -> torch.Tensor:
        w = slice_ir(self, choice)
        out = x
        if w.expand_w is not None:
            assert self.expand_bn is not None and w.expand_bn is not None
            out = _act(sliced_bn(pointwise(out, w.expand_w), self.expand_bn, w.expand_bn), self.act)
        if self.stride == 1:
            dw_w, padding = _effective_kernel(w.dw_w, out.shape[-2:])
        else:
            dw_w, padding = w.dw_w, (w.dw_w.shape[-1] // 2,) * 2
        out = depthwise_conv(out, dw_w, stride=self.stride, padding=padding)
        out = _act(sliced_bn(out, self.dw_bn, w.dw_bn), self.act)
        if w.se is not None:
            fc1_w, fc1_b, fc2_w, fc2_b = w.se
            scale = F.relu(F.linear(out.mean((2, 3)), fc1_w[:, :, 0, 0], fc1_b), inplace=True)
            scale = F.hardsigmoid(F.linear(scale, fc2_w[:, :, 0, 0], fc2_b), inplace=True)
            out = out * scale[:, :, None, None]
        out = sliced_bn(pointwise(out, w.project_w), self.project_bn, w.project_bn)
        return out + x if self.residual else out


@torch.no_grad()
def reorder_channels(layer: ElasticMBConv) -> torch.Tensor:
    """Sort hidden channels by importance (L1 norm of the project weights reading them), largest first.

    Applied at OFA's elastic-expand phase so every expand-ratio slice keeps the most important channels. Permutes every
    tensor indexed by hidden channel consistently, so the network function is unchanged. Returns the permutation.
    """
    importance = layer.project_weight.abs().sum(dim=(0, 2, 3))
    perm = torch.argsort(importance, descending=True)
    layer.project_weight.copy_(layer.project_weight[:, perm])
    layer.dw_weight.copy_(layer.dw_weight[perm])
    bns = [layer.dw_bn] + ([layer.expand_bn] if layer.expand_bn is not None else [])
    for bn in bns:
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            t.copy_(t[perm])  # type: ignore[index,union-attr]
    if layer.expand_weight is not None:
        layer.expand_weight.copy_(layer.expand_weight[perm])
    if layer.se_fc1 is not None and layer.se_fc2 is not None:
        layer.se_fc1.weight.copy_(layer.se_fc1.weight[:, perm])
        layer.se_fc2.weight.copy_(layer.se_fc2.weight[perm])
        _bias(layer.se_fc2).copy_(_bias(layer.se_fc2)[perm])
    return perm
