"""Gated and relaxed forward passes of the supernet, for differentiable architecture search.

Both run on the elastic layers' own weights (`slice_ir` / `transformed_kernel`), so what the search trains is what
`extract` ships. Architecture parameters arrive as plain tensors shaped [stage, position, choice + skip] (the layout of
`hwnas.train.arch_params.ArchParams`; choice order = `layer_choices(stage)`, skip last); nothing is stored on modules.

- `gated_forward` (FBNet / ProxylessNAS): one sampled path. Each executed layer's output — or, at the position where the
  stage ends, its input (skip) — is multiplied by the gate of the chosen entry. The gates come from a straight-through
  estimator (forward value exactly 1), so the forward equals `supernet(x, arch)` and costs one path, while
  ∂loss/∂gate = ⟨∂loss/∂y, y⟩ carries the block's effect back to α.
- `relaxed_forward` (DARTS at single-path cost): the continuous relaxation folded into one largest-size path. Depthwise
  kernels are mixed as Σ_k p_k · pad(W_k) in one conv (for the linear conv this equals Σ_k p_k · conv(x, W_k)), expand
  ratios become a soft channel mask m_c = Σ_e p_e · [c < mid_ch(e)], and skip is a soft gate: a layer's output is
  g·f(x) + (1−g)·x with g the probability that the layer runs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from hwnas.space import SpaceSpec, layer_choices, make_divisible
from hwnas.supernet.elastic import ElasticMBConv, sliced_bn, transformed_kernel
from hwnas.supernet.supernet import Supernet

__all__ = ["gated_forward", "relaxed_forward", "relaxed_layer"]


def gated_forward(
    supernet: Supernet, x: torch.Tensor, indices: torch.Tensor, gates: torch.Tensor | None
) -> torch.Tensor:
    """Run the path `indices` [stages, positions] (skip = last column index); multiply outputs by `gates` if given."""
    space = supernet.space
    skip = None if gates is None else gates.shape[-1] - 1
    rows = indices.tolist()
    x = supernet.first(supernet.stem(x))
    for s, (layers, row) in enumerate(zip(supernet.stage_layers(), rows)):
        choices = layer_choices(space.stages[s])
        for p, c in enumerate(row):
            if c >= len(choices):  # skip: the stage ends here
                if gates is not None and p < gates.shape[1]:
                    x = x * gates[s, p, skip]
                break
            x = layers[p](x, choices[c])
            if gates is not None:
                x = x * gates[s, p, c]
    return supernet.head(x)  # type: ignore[no-any-return]


def _act(x: torch.Tensor, act: str) -> torch.Tensor:
    return F.relu(x) if act == "re" else F.hardswish(x)


def _full_bn(bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, ...]:
    return (bn.weight, bn.bias, bn.running_mean, bn.running_var)  # type: ignore[return-value]


def relaxed_layer(
    layer: ElasticMBConv,
    x: torch.Tensor,
    *,
    kernel_probs: torch.Tensor,
    kernels: tuple[int, ...],
    channel_mask: torch.Tensor,
    se_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """One elastic layer with mixed depthwise kernel and soft channel masks (largest-size path, one conv each).

    `se_mask` soft-masks the squeeze-excite bottleneck the same way (a smaller expand uses fewer SE units), so a one-hot
    distribution reproduces the discrete layer exactly."""
    mid = layer.max_mid_ch
    out = x
    if layer.expand_weight is not None:
        assert layer.expand_bn is not None
        out = _act(sliced_bn(F.conv2d(out, layer.expand_weight), layer.expand_bn, _full_bn(layer.expand_bn)), layer.act)
    size = layer.max_kernel
    weight = x.new_zeros(mid, 1, size, size)
    for i, k in enumerate(kernels):
        pad = (size - k) // 2
        weight = weight + kernel_probs[i] * F.pad(transformed_kernel(layer, k, mid), (pad, pad, pad, pad))
    out = F.conv2d(out, weight, None, layer.stride, size // 2, 1, mid)
    out = _act(sliced_bn(out, layer.dw_bn, _full_bn(layer.dw_bn)), layer.act)
    out = out * channel_mask.view(1, -1, 1, 1)
    if layer.se_fc1 is not None and layer.se_fc2 is not None:
        scale = F.relu(layer.se_fc1(out.mean((2, 3), keepdim=True)))
        if se_mask is not None:
            scale = scale * se_mask.view(1, -1, 1, 1)
        out = out * F.hardsigmoid(layer.se_fc2(scale))
    out = sliced_bn(F.conv2d(out, layer.project_weight), layer.project_bn, _full_bn(layer.project_bn))
    return out + x if layer.residual else out


@functools.lru_cache(maxsize=64)
def _marginal_maps(
    space: SpaceSpec, s: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
    """For stage s: [choices, kernels] and [choices, expands] one-hot maps, and per position kind (first layer, later
    layers: their input widths differ) the [expands, max_mid] 0/1 masks of the channels each expand ratio uses."""
    stage = space.stages[s]
    choices = layer_choices(stage)
    to_k = torch.tensor([[float(c.kernel == k) for k in stage.kernels] for c in choices])
    to_e = torch.tensor([[float(c.expand == e) for e in stage.expands] for c in choices])
    masks = []
    for in_ch in ((space.first_ch if s == 0 else space.stages[s - 1].out_ch), stage.out_ch):
        mids = [in_ch if e == 1 else make_divisible(in_ch * e) for e in stage.expands]
        ses = [make_divisible(m // 4) for m in mids]
        masks.append((_prefix_masks(mids), _prefix_masks(ses)))
    return to_k, to_e, (masks[0], masks[1])


def _prefix_masks(widths: list[int]) -> torch.Tensor:
    """[len(widths), max(widths)]: row i has ones on the first widths[i] channels."""
    return (torch.arange(max(widths))[None, :] < torch.tensor(widths)[:, None]).float()


def relaxed_forward(supernet: Supernet, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """DARTS-style expected network under `probs` [stages, positions, choices + skip], at the cost of one largest path."""
    x = supernet.first(supernet.stem(x))
    for s, layers in enumerate(supernet.stage_layers()):
        stage = supernet.space.stages[s]
        n = len(layer_choices(stage))
        to_k, to_e, masks = _marginal_maps(supernet.space, s)
        to_k, to_e = to_k.to(x.device, x.dtype), to_e.to(x.device, x.dtype)
        row = probs[s].to(x.dtype)
        skip = row[:, -1]
        keep = torch.cumprod(1.0 - skip, dim=0)  # P(layer p runs) = Π_{q≤p} (1 − skip[q])
        cond = row[:, :n] / (1.0 - skip).clamp_min(1e-6).unsqueeze(-1)  # choice distribution given the layer runs
        for p, layer in enumerate(layers):
            p_expand = cond[p] @ to_e
            mid_masks, se_masks = masks[0 if p == 0 else 1]
            out = relaxed_layer(
                layer,
                x,
                kernel_probs=cond[p] @ to_k,
                kernels=stage.kernels,
                channel_mask=p_expand @ mid_masks.to(x.device, x.dtype),
                se_mask=p_expand @ se_masks.to(x.device, x.dtype) if stage.se else None,
            )
            x = out if p < min(stage.depths) else keep[p] * out + (1.0 - keep[p]) * x
    return supernet.head(x)  # type: ignore[no-any-return]
