"""Once-for-All progressive shrinking (Cai et al., 2020): full → elastic kernel → elastic depth → elastic expand.

Phase 1 trains the largest subnet (random resolution) on the labels. Its weights are then frozen as the teacher, and
each later phase opens one more dimension: kernels, then depths, then expand ratios (after sorting hidden channels by
importance, so the narrow slices keep the important channels; the optimizer's momentum is reset there, as OFA restarts
its optimizer per phase). Sampled subnets learn from the labels plus KD from the teacher.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch

from hwnas.space import Arch, LayerChoice, largest
from hwnas.supernet import Supernet, reorder_channels
from hwnas.train.config import TrainConfig
from hwnas.train.strategy import StepContext, ce_loss, kd_loss, subnet_logits, warmup_cosine

PHASES = ("full", "kernel", "depth", "expand")


def phase(step: float, total: int, cfg: TrainConfig) -> str:
    bounds = list(itertools.accumulate(cfg.ofa_phase_fractions))
    progress = step / max(1, total)
    for name, bound in zip(PHASES, bounds):
        if progress < bound:
            return name
    return PHASES[-1]


def lr_factor(step: float, total: int, cfg: TrainConfig) -> float:
    return warmup_cosine(step, total, cfg)


def on_phase_start(ctx: StepContext, name: str) -> None:
    if name != "full" and "teacher" not in ctx.extra:
        ctx.extra["teacher"] = _frozen(copy.deepcopy(ctx.supernet))
    if name == "expand":
        for layer in ctx.supernet.elastic_layers():
            reorder_channels(layer)
        optimizer = ctx.extra.get("optimizer")
        if optimizer is not None:
            optimizer.state.clear()


def state_dict(ctx: StepContext) -> dict[str, Any]:
    teacher = ctx.extra.get("teacher")
    return {"teacher": teacher.state_dict()} if teacher is not None else {}


def load_state_dict(ctx: StepContext, state: dict[str, Any]) -> None:
    if "teacher" in state:
        teacher = Supernet(ctx.space).to(ctx.device)
        teacher.load_state_dict(state["teacher"])
        if ctx.cfg.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        ctx.extra["teacher"] = _frozen(teacher)


def _frozen(net: Supernet) -> Supernet:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _sample(ctx: StepContext, name: str) -> Arch:
    rng, space = ctx.rng, ctx.space
    stages = []
    for stage in space.stages:
        depth = rng.choice(stage.depths) if name in ("depth", "expand") else max(stage.depths)
        layers = tuple(
            LayerChoice(
                rng.choice(stage.kernels), rng.choice(stage.expands) if name == "expand" else max(stage.expands)
            )
            for _ in range(depth)
        )
        stages.append(layers)
    return Arch(rng.choice(space.resolutions), tuple(stages))


def train_step(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    name = ctx.phase or phase(ctx.step, ctx.total_steps, ctx.cfg)
    if name == "full":
        top = _sample(ctx, "full")
        loss = ce_loss(subnet_logits(ctx, images, top), labels, ctx.cfg)
        ctx.backward(loss)
        return {"loss": float(loss.detach())}
    teacher: Supernet = ctx.extra["teacher"]
    total, kd_total = 0.0, 0.0
    n = max(1, ctx.cfg.num_random)
    for _ in range(n):
        arch = _sample(ctx, name)
        with torch.no_grad():
            soft = torch.softmax(
                subnet_logits(ctx, images, largest(ctx.space, resolution=arch.resolution), teacher)
                / ctx.cfg.kd_temperature,
                dim=1,
            )
        logits = subnet_logits(ctx, images, arch)
        ce, kd = ce_loss(logits, labels, ctx.cfg), kd_loss(logits, soft, ctx.cfg)
        ctx.backward(ce + kd)
        total += float(ce.detach())
        kd_total += float(kd.detach())
    return {"loss": total / n, "loss_kd": kd_total / n}
