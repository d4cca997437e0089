"""Short fine-tune of an extracted subnet with knowledge distillation from the supernet's largest subnet.

Why: weights shared in a supernet are a compromise between all subnets; a few epochs alone, pulled towards the
teacher's soft labels (BigNAS / OFA inplace distillation), usually recover a point or two. The teacher is the
supernet itself running its largest arch at the student's resolution, in eval mode and without gradients.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.space import SpaceSpec, largest
from hwnas.train.strategy import distillation_kl

__all__ = ["FinetuneConfig", "kd_loss", "finetune_kd", "kd_teacher", "AtResolution"]

log = logging.getLogger(__name__)

Batches = Callable[[int], "object"]  # epoch -> iterator of (images, labels)


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    """SGD with Nesterov momentum and a cosine LR from `lr` to 0 over `epochs`; loss (1 - kd_weight)·CE + kd_weight·KD.

    `lr` defaults to 0.1: shared weights are a compromise between all subnets, and a short fine-tune has to move them.
    A small LR such as 0.01 barely does; on a briefly trained `mbv3-tiny` supernet a one-epoch fine-tune at 0.05–0.1
    ends at a higher test accuracy. A supernet trained much longer may want less (`--finetune-lr`).
    """

    epochs: int = 0
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 3e-5
    kd_weight: float = 0.5  # share of the loss from the teacher's soft labels
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise HwnasError(f"fine-tune epochs must be a whole number >= 0, got {self.epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise HwnasError(f"fine-tune learning rate must be positive, got {self.lr!r}")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise HwnasError(f"kd_weight must be in 0..1, got {self.kd_weight!r}")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    kd_weight: float,
    temperature: float,
) -> torch.Tensor:
    """(1 - w)·CE(labels) + w·T²·KL(teacher_T ‖ student_T) (Hinton et al.)."""
    ce = F.cross_entropy(student_logits, labels)
    if kd_weight == 0.0:
        return ce
    teacher_probs = F.softmax(teacher_logits / temperature, 1)
    return (1 - kd_weight) * ce + kd_weight * distillation_kl(student_logits, teacher_probs, temperature=temperature)


def finetune_kd(
    student: nn.Module,
    teacher: Callable[[torch.Tensor], torch.Tensor],
    batches: Callable[[int], object],
    *,
    cfg: FinetuneConfig,
    steps_per_epoch: int,
    progress: bool = False,
) -> list[float]:
    """Train `student` in place for `cfg.epochs` (SGD, cosine LR); `batches(epoch)` yields (images, labels).

    Returns the mean loss per epoch. The student is left in eval mode.
    """
    from tqdm import tqdm

    if cfg.epochs == 0:
        return []
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
    )
    total = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    losses = []
    bar = tqdm(total=total, desc="fine-tune (KD)", unit="step", disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for epoch in range(cfg.epochs):
            student.train()
            running, n = 0.0, 0
            for images, labels in batches(epoch):  # type: ignore[attr-defined]
                logits = student(images)
                if cfg.kd_weight == 0.0:  # no teacher forward: it costs more than the student's step
                    loss = F.cross_entropy(logits, labels)
                else:
                    with torch.no_grad():
                        soft = teacher(images)
                    loss = kd_loss(logits, soft, labels, kd_weight=cfg.kd_weight, temperature=cfg.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += float(loss.detach())
                n += 1
                bar.update(1)
                bar.set_postfix(loss=f"{running / n:.3f}")
            losses.append(running / max(n, 1))
            log.info("fine-tune epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, losses[-1])
    finally:
        bar.close()
        student.eval()
    return losses


class AtResolution(torch.nn.Module):
    """`model` fed its batches resized to `resolution` (the fine-tune's batches come at the data's own size)."""

    def __init__(self, model: torch.nn.Module, resolution: int) -> None:
        super().__init__()
        self.model, self.resolution = model, resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from hwnas.data import resize

        return self.model(resize(x, self.resolution))  # type: ignore[no-any-return]


def kd_teacher(
    supernet: Any,
    space: SpaceSpec,
    train: Any,
    *,
    batch_size: int,
    seed: int,
    recalib_batches: int,
    device: torch.device | None = None,
) -> Any:
    """The fine-tune's teacher: the supernet's largest subnet at the space's largest resolution, BN re-estimated for it.

    Why that resolution and not the student's: sandwich training (BigNAS) trains the largest subnet only at the largest
    resolution, so at a smaller one it can score below the small student it is meant to teach; and the stored BN
    statistics belong to whatever subnet was evaluated last. Returns a callable on batches of any size (each is resized
    for the teacher). `device`: where the supernet lives (the recalibration batches are put there).
    """
    from hwnas.data import batches, resize
    from hwnas.train.evaluate import recalibrate_bn

    arch = largest(space)
    gen = torch.Generator().manual_seed(seed + 7)
    recalibrate_bn(
        supernet,
        (
            x
            for x, _ in batches(
                train, batch_size=batch_size, shuffle=True, generator=gen, device=device, limit=recalib_batches
            )
        ),
        arch=arch,
    )
    supernet.eval()
    return lambda x: supernet(resize(x, arch.resolution), arch)
