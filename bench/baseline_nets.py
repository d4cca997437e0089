"""torchvision MobileNetV3 baselines adapted to an hwnas space's input, and their standalone training.

Why this file exists: the result-quality benchmark (`bench_baselines.py`) must compare hwnas winners with the models a
practitioner would otherwise pick, trained under the *same* recipe as the hwnas pipeline, so that a difference in test
accuracy comes from the architecture and not from a kinder schedule. Everything here therefore reuses hwnas's own pieces:
the data pipeline (`epoch_order` / `make_batch`: the run's augmentation, normalisation and bilinear resize), the run's
`TrainConfig` (batch size, SGD with Nesterov momentum, weight decay off BN/bias, label smoothing, gradient clipping) and
the run's LR schedule (`lr_factor` of the mode that trained the supernet).

The adaptation mirrors how `mbv3-tiny` differs from `mbv3`: the stem convolution takes the dataset's channel count and
has stride 1 (small images), everything else is torchvision's network unchanged (including its classifier dropout).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hwnas.data import Dataset, epoch_order, make_batch
from hwnas.train.config import TrainConfig
from hwnas.train.strategy import load_strategy

__all__ = ["BASELINES", "BaselineSpec", "TrainPlan", "build_baseline", "run_augment", "train_baseline"]

log = logging.getLogger(__name__)

Family = Literal["small", "large"]


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    family: Family
    width: float

    @property
    def name(self) -> str:
        return f"mobilenet_v3_{self.family}_x{self.width:g}"


BASELINES: tuple[BaselineSpec, ...] = tuple(BaselineSpec(f, w) for f in ("small", "large") for w in (0.5, 0.75, 1.0))


@dataclass(frozen=True, slots=True)
class TrainPlan:
    """How one baseline is trained: the run's recipe (`recipe`) over `steps` steps at `resolution`, seeded by `seed`."""

    recipe: TrainConfig
    steps: int
    resolution: int
    seed: int
    batch_size: int


def build_baseline(spec: BaselineSpec, *, in_channels: int, num_classes: int, seed: int) -> nn.Module:
    """torchvision's MobileNetV3 with a stride-1 stem taking `in_channels`; initial weights a pure function of `seed`."""
    import torchvision

    factory = torchvision.models.mobilenet_v3_small if spec.family == "small" else torchvision.models.mobilenet_v3_large
    with torch.random.fork_rng(devices=[]):  # torchvision initialises from the global RNG: seed it locally, restore it
        torch.manual_seed(seed)
        model = factory(width_mult=spec.width, num_classes=num_classes)
        old = model.features[0][0]
        assert isinstance(old, nn.Conv2d) and old.stride == (2, 2)
        stem = nn.Conv2d(
            in_channels, old.out_channels, kernel_size=old.kernel_size, stride=1, padding=old.padding, bias=False
        )
        nn.init.kaiming_normal_(stem.weight, mode="fan_out")  # torchvision's init for every conv
        model.features[0][0] = stem
    return model


def run_augment(recipe: TrainConfig) -> str:
    """The augmentation the supernet trained with: `TrainConfig.augment` where the config has it, else "crop-flip"
    (what every run used before augmentations had names; `make_batch` of that time takes it as a true value)."""
    return str(getattr(recipe, "augment", "crop-flip"))


def _param_groups(model: nn.Module, recipe: TrainConfig) -> list[dict[str, object]]:
    """Weight decay on conv/linear weights only, as `hwnas.train.loop` does for the supernet."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_baseline(model: nn.Module, data: Dataset, plan: TrainPlan, *, desc: str, progress: bool = True) -> float:
    """Train `model` in place on `data.train` with the run's recipe; returns the training seconds (data + steps).

    Batches follow `hwnas.train.loop`: the sample order of an epoch is `epoch_order(seed, epoch)` and each batch's
    augmentation generator is derived from (seed, step). torchvision's classifier dropout draws from torch's global
    RNG, so training runs inside `fork_rng` seeded by `seed`: the seed fixes the run and the caller's RNG is untouched.
    """
    started = time.perf_counter()
    bar = tqdm(total=plan.steps, desc=desc, unit="step", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(plan.seed)
            _train_steps(model, data, plan, bar=bar, desc=desc)
    finally:
        bar.close()
        model.eval()
    return time.perf_counter() - started


def _train_steps(model: nn.Module, data: Dataset, plan: TrainPlan, *, bar: tqdm, desc: str) -> None:  # type: ignore[type-arg]
    recipe = plan.recipe
    lr_factor = load_strategy(recipe.mode).lr_factor
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(
        _param_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov
    )
    n_train = len(data.train)
    spe = max(1, n_train // plan.batch_size)
    params = list(model.parameters())
    augment = run_augment(recipe)
    running = 0.0
    for step in range(plan.steps):
        epoch, in_epoch = divmod(step, spe)
        order = epoch_order(n_train, seed=plan.seed, epoch=epoch)
        lo = in_epoch * plan.batch_size
        gen = torch.Generator().manual_seed(plan.seed * 1_000_003 + step * 1009)
        images, labels = make_batch(
            data.train,
            order[lo : lo + plan.batch_size],
            resolution=plan.resolution,
            augment=augment,
            generator=gen,
            channels_last=True,
        )
        lr = recipe.lr * lr_factor(step, plan.steps, recipe)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels, label_smoothing=recipe.label_smoothing)
        loss.backward()
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RuntimeError(f"{desc}: loss became {value} at step {step + 1}")
        running = value if step == 0 else 0.98 * running + 0.02 * value
        bar.update(1)
        if (step + 1) % 50 == 0 or step + 1 == plan.steps:
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{lr:.4f}", refresh=False)
        if (step + 1) % max(1, spe // 2) == 0:
            log.info(
                "%s: step %d/%d (epoch %.2f) loss %.4f lr %.4f",
                desc,
                step + 1,
                plan.steps,
                (step + 1) / spe,
                running,
                lr,
            )
