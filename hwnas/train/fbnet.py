"""`fbnet` mode (Wu et al., 2019): Gumbel-softmax hard samples, straight-through gates, annealed temperature.

Per layer a one-hot is drawn from softmax((α + Gumbel noise)/τ); the forward runs only the drawn choice (one path, one
forward), and its output is multiplied by the straight-through gate  hard − soft.detach() + soft  (value 1), so the
gradient of the loss reaches every α of the layer through the soft sample. Loss: CE · a · log(E[LAT])^b.
"""

from __future__ import annotations

import torch

from hwnas.supernet.relaxed import gated_forward
from hwnas.train.arch_params import ArchParams
from hwnas.train.nas_state import NasState, differentiable_arch_step

__all__ = ["gumbel_gates", "weight_forward", "arch_step", "arch_forward"]

USES_TEMPERATURE = True


def gumbel_gates(params: ArchParams, *, tau: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(straight-through gates [stages, positions, choices + skip], sampled indices [stages, positions])."""
    u = torch.rand(params.shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7).to(params.logits.device)
    gumbel = -torch.log(-torch.log(u))
    soft = torch.softmax(params.masked(params.logits + gumbel) / tau, dim=-1)
    index = soft.detach().argmax(dim=-1)
    hard = torch.nn.functional.one_hot(index, soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft, index.cpu()


def weight_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    """Weights train on paths sampled from the current distribution (no gradient to α)."""
    return gated_forward(state.supernet, x, state.params.sample(state.generator)[0], None)


def arch_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    gates, index = gumbel_gates(state.params, tau=state.tau, generator=state.generator)
    return gated_forward(state.supernet, x, index, gates)


def arch_step(state: NasState, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with state.autocast():
        logits = arch_forward(state, x)
    return differentiable_arch_step(state, logits, y)
