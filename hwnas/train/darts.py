"""`darts` mode (Liu et al., 2019), at single-path cost: the continuous relaxation folded into one largest path.

Both levels run `relaxed_forward` — depthwise kernels mixed as Σ p_k · pad(W_k), expand ratios as a soft channel mask,
skip as a soft gate — weights with P = softmax(α) held fixed on a train batch, α on a val batch (first-order DARTS).
The discrete arch takes every layer's most probable entry under P.
"""

from __future__ import annotations

import torch

from hwnas.supernet.relaxed import relaxed_forward
from hwnas.train.nas_state import NasState, differentiable_arch_step

__all__ = ["weight_forward", "arch_step", "arch_forward"]

USES_TEMPERATURE = False


def weight_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    return relaxed_forward(state.supernet, x, state.params.probs().detach())


def arch_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    return relaxed_forward(state.supernet, x, state.params.probs())


def arch_step(state: NasState, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with state.autocast():
        logits = arch_forward(state, x)
    return differentiable_arch_step(state, logits, y)
