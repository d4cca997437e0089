"""`proxyless` mode (Cai et al., 2019): path binarization — one path sampled from softmax(α), binary gates.

The sampled path is the only one run. Its binary gate g (value 1) is tied to the path probabilities by the straight-
through estimator g = onehot − p.detach() + p, i.e. ProxylessNAS's ∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i) restricted to
the active path (the one ∂L/∂g known at single-path cost). No temperature. Loss: CE + λ · E[LAT] / T by default.
"""

from __future__ import annotations

import torch

from hwnas.supernet.relaxed import gated_forward
from hwnas.train.arch_params import ArchParams
from hwnas.train.nas_state import NasState, differentiable_arch_step

__all__ = ["binary_gates", "weight_forward", "arch_step", "arch_forward"]

USES_TEMPERATURE = False


def binary_gates(params: ArchParams, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(binary straight-through gates, sampled indices): the path is drawn from P = softmax(α) itself."""
    probs = params.probs()
    index = params.sample(generator)[0]
    hard = torch.nn.functional.one_hot(index.to(probs.device), probs.shape[-1]).to(probs.dtype)
    return hard - probs.detach() + probs, index


def weight_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    return gated_forward(state.supernet, x, state.params.sample(state.generator)[0], None)


def arch_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    gates, index = binary_gates(state.params, generator=state.generator)
    return gated_forward(state.supernet, x, index, gates)


def arch_step(state: NasState, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with state.autocast():
        logits = arch_forward(state, x)
    return differentiable_arch_step(state, logits, y)
