"""BigNAS (Yu et al., 2020): sandwich rule + inplace distillation, exponential-decay LR with a constant ending.

Each step trains the largest subnet on the labels, then the smallest and `num_random` uniformly sampled subnets on the
largest subnet's soft predictions (detached). Every subnet gets its own resolution: the largest at the largest
resolution, the smallest at the smallest, random ones at a random resolution — one batch, resized per subnet.
"""

from __future__ import annotations

import torch

from hwnas.space import largest, sample, smallest
from hwnas.train.config import TrainConfig
from hwnas.train.strategy import StepContext, ce_loss, kd_loss, subnet_logits, warmup_exp_constant


def phase(step: float, total: int, cfg: TrainConfig) -> str:
    return "sandwich"


def lr_factor(step: float, total: int, cfg: TrainConfig) -> float:
    return warmup_exp_constant(step, total, cfg)


def train_step(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    space, cfg = ctx.space, ctx.cfg
    top = largest(space) if cfg.max_resolution_for_max else largest(space, resolution=ctx.rng.choice(space.resolutions))
    logits = subnet_logits(ctx, images, top)
    loss = ce_loss(logits, labels, cfg)
    ctx.backward(loss)
    with torch.no_grad():
        soft = torch.softmax(logits.detach() / cfg.kd_temperature, dim=1)
    archs = [smallest(space)] + [sample(space, ctx.rng) for _ in range(cfg.num_random)]
    kd_total = 0.0
    for arch in archs:
        kd = kd_loss(subnet_logits(ctx, images, arch), soft, cfg)
        ctx.backward(kd)
        kd_total += float(kd.detach())
    return {"loss": float(loss.detach()), "loss_kd": kd_total / len(archs)}
