"""What a training mode is, and how the loop finds one.

A mode is one module `hwnas/train/strategies/<mode>.py` exposing:

- `train_step(ctx, images, labels) -> dict[str, float]`: forward/backward of the subnets of one step (gradients
  accumulate; the loop zeroes them before and runs all-reduce, clip and the optimizer step after). Forwards go
  through `subnet_logits` (autocast at the run's `--amp`) and every backward through `ctx.backward(loss)`, which
  scales the loss under fp16 (a bare `loss.backward()` would be unscaled by the loop's GradScaler);
- `lr_factor(step, total_steps, cfg) -> float`: multiplier of `cfg.lr` at `step` (a float: see `schedule_step`);
- `phase(step, total_steps, cfg) -> str`: phase name written to metrics.csv and the checkpoint (the loop also puts
  the current one in `ctx.phase`);
- optional `on_phase_start(ctx, phase)`, `state_dict(ctx) -> dict` and `load_state_dict(ctx, state)` for strategy
  state that must survive a resume (OFA's teacher; architecture logits of differentiable modes);
- optional `extra_parameters(ctx) -> list[Tensor]` — tensors trained by the strategy's own optimizer (not the loop's).

Adding a mode (fbnet, proxyless, darts, enas) is adding one such module: `available_modes()` lists the package's
modules without importing them, so `hwnas train --mode` picks it up and `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
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
from hwnas.train.amp import autocast
from hwnas.train.config import TrainConfig

__all__ = [
    "StepContext",
    "available_modes",
    "load_strategy",
    "subnet_logits",
    "ce_loss",
    "kd_loss",
    "distillation_kl",
    "warmup_cosine",
    "warmup_exp_constant",
    "Knots",
    "schedule_step",
    "extend_schedule",
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
    phase: str = ""
    rng: random.Random = field(default_factory=random.Random)
    extra: dict[str, Any] = field(default_factory=dict)
    amp: str = "none"  # the precision this run trains with, resolved for `device` (hwnas.train.amp)
    scaler: torch.amp.GradScaler | None = None  # the loop's loss scaler (active for fp16 only)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast at the run's precision for a forward pass and its loss (a no-op for amp "none")."""
        return autocast(self.amp, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of `loss`, scaled by the loop's GradScaler under fp16 (unscaled before the step)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()


def subnet_logits(
    ctx: StepContext, images: torch.Tensor, arch: Arch, net: Callable[[torch.Tensor, Arch], torch.Tensor] | None = None
) -> torch.Tensor:
    """Logits (float32) of `arch` on `images` resized to the arch's resolution."""
    x = resize(images, arch.resolution)
    if ctx.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with ctx.autocast():
        out = (net or ctx.supernet)(x, arch)
    return out.float()


def ce_loss(logits: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)


def distillation_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """T²·KL(teacher ‖ student at temperature T), batch mean (Hinton et al.): the one distillation term of hwnas.

    Its gradient is that of the soft cross-entropy against the teacher's probabilities (the two differ by the teacher's
    entropy, a constant); the KL form is 0 when the student matches the teacher, which makes logged values readable.
    """
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), teacher_probs, reduction="batchmean") * (t * t)


def kd_loss(logits: torch.Tensor, soft_targets: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Inplace distillation against a teacher's probabilities `soft_targets` at the run's KD temperature."""
    return distillation_kl(logits, soft_targets, temperature=cfg.kd_temperature)


def warmup_cosine(step: float, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_fraction * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr_end_fraction + (1 - cfg.lr_end_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_exp_constant(step: float, total: int, cfg: TrainConfig) -> float:
    """BigNAS: linear warmup, exponential decay reaching `lr_end_fraction` at `decay_end_fraction`, then constant."""
    warm = max(1, int(cfg.warmup_fraction * total))
    if step < warm:
        return (step + 1) / warm
    span = max(1, int(cfg.decay_end_fraction * total) - warm)
    progress = min(1.0, (step - warm) / span)
    return float(cfg.lr_end_fraction**progress)


Knots = tuple[tuple[int, float], ...]
"""(step, schedule step) points where a run's length was changed on resume; see `schedule_step`."""


def schedule_step(step: int, total: int, *, knots: Knots = (), span: int = 0) -> float:
    """Where step `step` of a run of `total` steps sits on its schedule (LR, OFA phases) of `span` steps.

    A run whose length never changed has no knots: its schedule step is the step itself. Each change of length on
    resume (`extend_schedule`) adds the knot (s, c): c is where step s was on the schedule then; from the last knot the
    schedule step runs linearly to `span` at `total`. So the rest of the schedule is stretched (or squeezed) over the
    new remaining steps: the LR at the resume step is the one the old schedule gave it and never jumps, and the run
    still ends on the schedule's final value. A run that had finished its schedule continues at its final LR.
    """
    if not knots:
        return float(step)
    points = ((0, 0.0), *knots, (total, float(span)))
    for (s0, c0), (s1, c1) in itertools.pairwise(points):
        if step < s1 or s1 == total:
            return c1 if s1 == s0 else c0 + (step - s0) * (c1 - c0) / (s1 - s0)
    return float(span)


def extend_schedule(
    knots: Knots,
    span: int,
    *,
    old_total: int,
    new_total: int,
    done: int,
    where: str = "the run",
    unit: str = "steps",
) -> tuple[Knots, int]:
    """Knots and span of a run of `old_total` steps, `done` of them trained, that now runs to `new_total` steps.

    Nothing trained yet: the schedule simply spans the new total. Otherwise a knot at `done` keeps every step already
    taken where it was and stretches the rest (see `schedule_step`). `span` 0 means the run's own total. A new total
    below `done` is an error naming the run (`where`) and what its steps count (`unit`).
    """
    if new_total < done:
        raise HwnasError(
            f"{where} has already trained {done} {unit}; a length of {new_total} steps would end before "
            f"that: pass --max-steps or --epochs of at least {done} steps"
        )
    if new_total == old_total:
        return knots, span
    if done == 0:
        return (), 0
    span = span or old_total
    here = schedule_step(done, old_total, knots=knots, span=span)
    return (*(k for k in knots if k[0] < done), (done, here)), span
