"""What a training mode is, and how the loop finds one.

A mode is one module `hwnas/train/strategies/<mode>.py` exposing:

- `train_step(ctx, images, labels) -> dict[str, float]`: forward/backward of the subnets of one step (gradients
  accumulate; the loop zeroes them before and runs clip, all-reduce and the optimizer step after);
- `lr_factor(step, total_steps, cfg) -> float`: multiplier of `cfg.lr` at `step`;
- `phase(step, total_steps, cfg) -> str`: phase name written to metrics.csv and the checkpoint;
- optional `on_phase_start(ctx, phase)`, `state_dict(ctx) -> dict` and `load_state_dict(ctx, state)` for strategy
  state that must survive a resume (OFA's teacher; architecture logits of differentiable modes);
- optional `extra_parameters(ctx) -> list[Tensor]` — tensors trained by the strategy's own optimizer (not the loop's).

Adding a mode (fbnet, proxyless, darts, enas) is adding one such module: `available_modes()` lists the package's
modules without importing them, so `hwnas train --mode` picks it up and `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import pkgutil
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.data import resize
from hwnas.errors import HwnasError
from hwnas.space import Arch, SpaceSpec
from hwnas.supernet import Supernet
from hwnas.train.config import TrainConfig

__all__ = [
    "StepContext", "available_modes", "load_strategy", "subnet_logits", "ce_loss", "kd_loss",
    "warmup_cosine", "warmup_exp_constant",
]

_PACKAGE = "hwnas.train.strategies"


def available_modes() -> tuple[str, ...]:
    """Mode names = module names in hwnas/train/strategies (found on disk, not imported)."""
    folder = Path(__file__).parent / "strategies"
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_")))


def load_strategy(mode: str) -> ModuleType:
    if mode not in available_modes():
        raise HwnasError(f"unknown training mode {mode!r}; available: {', '.join(available_modes())}")
    return importlib.import_module(f"{_PACKAGE}.{mode}")


@dataclass
class StepContext:
    """Everything a strategy's step may use. `rng` is derived from (seed, step): identical on every DDP rank and
    after a resume, so subnet sampling needs no saved state."""

    supernet: Supernet
    space: SpaceSpec
    cfg: TrainConfig
    device: torch.device
    step: int = 0
    total_steps: int = 1
    rng: random.Random = field(default_factory=random.Random)
    extra: dict[str, Any] = field(default_factory=dict)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA when `cfg.amp`; a no-op on CPU (CPU autocast is slower for these convs)."""
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def subnet_logits(ctx: StepContext, images: torch.Tensor, arch: Arch,
                  net: Callable[[torch.Tensor, Arch], torch.Tensor] | None = None) -> torch.Tensor:
    """Logits (float32) of `arch` on `images` resized to the arch's resolution."""
    x = resize(images, arch.resolution)
    if ctx.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with ctx.autocast():
        out = (net or ctx.supernet)(x, arch)
    return out.float()


def ce_loss(logits: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)


def kd_loss(logits: torch.Tensor, soft_targets: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Soft cross-entropy against a teacher's probabilities (at temperature T, scaled by T² as in Hinton et al.)."""
    t = cfg.kd_temperature
    return -(soft_targets * F.log_softmax(logits / t, dim=1)).sum(1).mean() * (t * t)


def warmup_cosine(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_fraction * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr_end_fraction + (1 - cfg.lr_end_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_exp_constant(step: int, total: int, cfg: TrainConfig) -> float:
    """BigNAS: linear warmup, exponential decay reaching `lr_end_fraction` at `decay_end_fraction`, then constant."""
    warm = max(1, int(cfg.warmup_fraction * total))
    if step < warm:
        return (step + 1) / warm
    span = max(1, int(cfg.decay_end_fraction * total) - warm)
    progress = min(1.0, (step - warm) / span)
    return float(cfg.lr_end_fraction**progress)
