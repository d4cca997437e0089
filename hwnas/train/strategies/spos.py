"""SPOS (Guo et al., 2020): one uniformly sampled single path per step, trained on the labels."""

from __future__ import annotations

import torch

from hwnas.space import sample
from hwnas.train.config import TrainConfig
from hwnas.train.strategy import StepContext, ce_loss, subnet_logits, warmup_cosine


def phase(step: float, total: int, cfg: TrainConfig) -> str:
    return "uniform"


def lr_factor(step: float, total: int, cfg: TrainConfig) -> float:
    return warmup_cosine(step, total, cfg)


def train_step(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    arch = sample(ctx.space, ctx.rng)
    loss = ce_loss(subnet_logits(ctx, images, arch), labels, ctx.cfg)
    ctx.backward(loss)
    return {"loss": float(loss.detach())}
