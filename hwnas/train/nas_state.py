"""The state an architecture-search step works on, and the architecture step shared by the differentiable modes.

Every mode module (`fbnet`, `proxyless`, `darts`, `enas`) is a handful of functions of a `NasState`:
``weight_forward(state, x) -> logits`` for the weight step on a train batch and ``arch_step(state, x, y) -> metrics``
for the α step on a val batch. A new mode is one new module with those two functions; its network forwards run
inside `state.autocast()` (the run's `--amp`), and the loss stays float32 / float64 outside it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.supernet import Supernet
from hwnas.train.amp import autocast
from hwnas.train.arch_params import ArchParams
from hwnas.train.expected_latency import LatencyArrays, expected_latency_ms
from hwnas.train.nas_config import NasConfig, latency_loss

__all__ = ["NasState", "differentiable_arch_step"]

_NU_RANGE = (-6.0, 4.0)  # the adapted latency weight stays within [e^-6, e^4] × its configured value


@dataclass
class NasState:
    """Supernet, α, LUT arrays and the per-run mutable scalars (temperature, dual variable, ENAS baseline)."""

    supernet: Supernet
    params: ArchParams
    arrays: LatencyArrays
    cfg: NasConfig
    generator: torch.Generator
    alpha_opt: torch.optim.Optimizer
    tau: float = 1.0
    nu: float = 0.0  # log of the latency-weight multiplier (dual ascent)
    baseline: float | None = None  # ENAS moving-average reward
    extra: dict[str, float] = field(default_factory=dict)
    amp: str = "none"  # the precision of the network forwards, resolved for the supernet's device (hwnas.train.amp)
    alpha_scaler: torch.amp.GradScaler | None = None  # fp16: loss scaling of the α gradient through the network

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast at the run's precision for a network forward (a no-op for amp "none")."""
        return autocast(self.amp, self.params.logits.device)

    @property
    def scale(self) -> float:
        return math.exp(self.nu)

    def adapt(self, lat_ms: float) -> None:
        """Dual ascent on the latency weight: raise it while over the target, lower it while under."""
        if self.cfg.adapt_rate > 0:
            step = self.cfg.adapt_rate * (lat_ms / self.cfg.target_ms - 1.0)
            self.nu = min(max(self.nu + step, _NU_RANGE[0]), _NU_RANGE[1])


def differentiable_arch_step(state: NasState, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """One Adam step on α from a val batch's logits (computed with α in the graph) and the expected latency."""
    ce = F.cross_entropy(logits.float(), labels)
    lat = expected_latency_ms(state.params.probs(torch.float64), state.arrays)
    loss = latency_loss(ce.double(), lat, state.cfg, scale=state.scale)
    scaler = state.alpha_scaler
    (grad,) = torch.autograd.grad(scaler.scale(loss) if scaler is not None else loss, [state.params.logits])
    state.alpha_opt.zero_grad(set_to_none=True)
    state.params.logits.grad = grad
    if scaler is not None:  # unscales, and skips the step when the fp16 forward overflowed
        scaler.step(state.alpha_opt)
        scaler.update()
    else:
        state.alpha_opt.step()
    state.adapt(float(lat.detach()))
    acc = float((logits.argmax(1) == labels).float().mean())
    return {
        "arch_loss": float(loss.detach()),
        "val_ce": float(ce.detach()),
        "val_acc": acc,
        "expected_ms": float(lat.detach()),
    }
