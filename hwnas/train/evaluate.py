"""Subnet evaluation: BatchNorm recalibration and top-1 accuracy.

A supernet's BN running statistics are a blur over every subnet trained; a subnet's own statistics must be re-estimated
on a few training batches before it is evaluated (OFA, BigNAS). `evaluate_arch` is that recipe in one call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from hwnas.data import Dataset, Split, batches, resize
from hwnas.space import Arch

__all__ = ["recalibrate_bn", "accuracy", "evaluate_arch"]


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, images: Iterable[torch.Tensor], *, arch: Arch | None = None, channels_last: bool = False
) -> None:
    """Re-estimate every BN's running mean/var as the exact average over `images` (float batches).

    `model` is a static network (`model(x)`) or, with `arch`, a supernet (`model(x, arch)`; batches are resized to the
    arch's resolution and only the slices that arch uses are rewritten). Leaves the model in eval mode.
    """
    bns = _bns(model)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    model.train()
    try:
        for x in images:
            if arch is not None:
                x = resize(x, arch.resolution)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            model(x, arch) if arch is not None else model(x)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        model.eval()


@torch.no_grad()
def accuracy(
    model: nn.Module,
    split: Split,
    *,
    resolution: int,
    batch_size: int = 500,
    arch: Arch | None = None,
    device: torch.device | None = None,
    channels_last: bool = False,
    limit: int | None = None,
) -> float:
    """Top-1 accuracy of `model` (eval mode) on `split` at `resolution`; with `arch`, of that supernet subnet."""
    model.eval()
    correct = total = 0
    for x, y in batches(
        split, batch_size=batch_size, resolution=resolution, device=device, channels_last=channels_last, limit=limit
    ):
        logits = model(x, arch) if arch is not None else model(x)
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    return correct / max(1, total)


def evaluate_arch(
    supernet: nn.Module,
    data: Dataset,
    arch: Arch,
    *,
    split: str = "val",
    recal_batches: int = 20,
    batch_size: int = 500,
    seed: int = 0,
    device: torch.device | None = None,
    channels_last: bool = False,
) -> float:
    """BN-recalibrate `arch` on `recal_batches` seeded training batches, then its accuracy on `split`."""
    gen = torch.Generator().manual_seed(seed)
    recal = (
        x
        for x, _ in batches(
            data.train, batch_size=batch_size // 2 or 1, shuffle=True, generator=gen, device=device, limit=recal_batches
        )
    )
    recalibrate_bn(supernet, recal, arch=arch, channels_last=channels_last)
    return accuracy(
        supernet,
        data.split(split),
        resolution=arch.resolution,
        batch_size=batch_size,
        arch=arch,
        device=device,
        channels_last=channels_last,
    )
