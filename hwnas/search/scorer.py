"""Measured accuracy of candidates: extract the subnet, recalibrate its BatchNorm, evaluate on the val split; cached.

A subnet sliced out of a supernet inherits BN statistics accumulated over *other* subnets, which can cost tens of points
of accuracy; re-estimating them on a few training batches (OFA, BigNAS) fixes that at the cost of a few forward passes.
The calibration and val batches are normalised and resized once per resolution and reused for every candidate, models run
channels_last under `torch.inference_mode`, and results are cached by arch string, so a search over several budgets never
measures the same subnet twice. `known` seeds that cache with accuracies measured by an earlier process (a resumed
search's journal) and `on_measured` hears of every fresh measurement as it happens (the journal's append), so an
interrupted search never pays twice for a candidate.

Under torchrun (`dist` with more than one rank) a batch call splits its unmeasured candidates between the ranks
(`hwnas.search.sharding`); `on_measured` then hears of the whole batch, in batch order, once every rank's share has been
merged, so the journal reads the same as a single process's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from hwnas.data.batches import make_batch
from hwnas.data.datasets import Split
from hwnas.errors import HwnasError
from hwnas.search.genome import genome_of
from hwnas.space import Arch, SpaceSpec
from hwnas.train.evaluate import recalibrate_bn

if TYPE_CHECKING:
    from hwnas.distributed import Dist
    from hwnas.train.checkpoint import LoadedRun

__all__ = ["ScorerConfig", "SupernetScorer", "scorer_for_run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScorerConfig:
    calib_batches: int = 4  # training batches used to re-estimate BN statistics
    calib_batch_size: int = 256
    val_batch_size: int = 1000
    val_images: int | None = None  # evaluate on the first N val images (None: the whole split)
    seed: int = 0  # which training images calibrate BN (fixed, so scores are reproducible)

    def __post_init__(self) -> None:
        if self.calib_batches < 1 or self.calib_batch_size < 1 or self.val_batch_size < 1:
            raise HwnasError("scorer batches and batch sizes must be >= 1")
        if self.val_images is not None and self.val_images < 1:
            raise HwnasError("val_images must be >= 1")


class SupernetScorer:
    """Callable score function over genes (or `accuracy(arch)` for one arch): val top-1 accuracy in [0, 1].

    `build(arch)` returns the candidate's static model (`extract(supernet, arch)` for a trained run). State: the result
    cache and per-resolution batch cache, both local to this object. `known` entries are served as cache hits;
    `on_measured(arch_string, accuracy)` runs after each fresh measurement, before it enters the cache. With `dist`
    of several ranks, every rank must make the same calls (the same seeded strategy does): each measures its share of a
    batch and all of them end with the same cache, hits and misses.
    """

    def __init__(
        self,
        space: SpaceSpec,
        build: Callable[[Arch], nn.Module],
        *,
        train: Split,
        val: Split,
        cfg: ScorerConfig,
        device: torch.device | None = None,
        known: Mapping[str, float] | None = None,
        on_measured: Callable[[str, float], None] | None = None,
        dist: Dist | None = None,
    ) -> None:
        self.space = space
        self.build = build
        self.train_split = train
        self.val_split = val
        self.cfg = cfg
        self.device = device or torch.device("cpu")
        self.cache: dict[str, float] = dict(known or {})
        self.on_measured = on_measured
        self.dist = dist
        self.hits = 0
        self.misses = 0
        self._batches: dict[int, tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]] = {}

    def _data(self, resolution: int) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        if resolution not in self._batches:
            cfg = self.cfg
            gen = torch.Generator().manual_seed(cfg.seed)
            n_train = len(self.train_split)
            order = torch.randperm(n_train, generator=gen)[: cfg.calib_batches * cfg.calib_batch_size]
            calib = [
                make_batch(
                    self.train_split,
                    order[i : i + cfg.calib_batch_size],
                    resolution=resolution,
                    device=self.device,
                    channels_last=True,
                )[0]
                for i in range(0, order.numel(), cfg.calib_batch_size)
            ]
            n_val = len(self.val_split) if cfg.val_images is None else min(cfg.val_images, len(self.val_split))
            val = [
                make_batch(
                    self.val_split,
                    torch.arange(i, min(i + cfg.val_batch_size, n_val)),
                    resolution=resolution,
                    device=self.device,
                    channels_last=True,
                )
                for i in range(0, n_val, cfg.val_batch_size)
            ]
            self._batches[resolution] = (calib, val)
        return self._batches[resolution]

    def _measure(self, arch: Arch) -> float:
        calib, val = self._data(arch.resolution)
        model = self.build(arch).to(self.device).to(memory_format=torch.channels_last)
        recalibrate_bn(model, calib)
        correct = total = 0
        with torch.inference_mode():
            for x, y in val:
                correct += int((model(x).argmax(1) == y).sum())
                total += int(y.numel())
        acc = correct / max(total, 1)
        log.debug("measured %s: val acc %.4f", arch, acc)
        return acc

    def _record(self, key: str, accuracy: float) -> None:
        if self.on_measured is not None:
            self.on_measured(key, accuracy)
        self.cache[key] = accuracy

    def accuracy(self, arch: Arch) -> float:
        key = str(arch)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.misses += 1
        acc = self._measure(arch)
        self._record(key, acc)
        return acc

    def _sharded(self, archs: list[Arch], dist: Dist) -> list[float]:
        """One batch measured by all ranks together: the same result, cache and counters on every rank."""
        from hwnas.search.sharding import merge_shares, shard_indices

        keys = [str(a) for a in archs]
        pending = {k: a for k, a in zip(keys, archs) if k not in self.cache}
        if pending:  # every rank holds the same cache, so every rank skips the exchange together
            todo = list(pending.values())
            mine = {
                str(todo[i]): self._measure(todo[i])
                for i in shard_indices([a.resolution for a in todo], rank=dist.rank, world=dist.world)
            }
            merged = merge_shares(dist, list(pending), mine)
            for key in pending:
                self._record(key, merged[key])
        self.misses += len(pending)
        self.hits += len(keys) - len(pending)
        return [self.cache[k] for k in keys]

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        archs = genome_of(self.space).decode(genes)
        if self.dist is not None and self.dist.world > 1:
            return np.array(self._sharded(archs, self.dist))
        return np.array([self.accuracy(a) for a in archs])


def scorer_for_run(
    run: LoadedRun,
    *,
    cfg: ScorerConfig,
    split: str = "val",
    known: Mapping[str, float] | None = None,
    on_measured: Callable[[str, float], None] | None = None,
    data_dir: Path | None = None,
    dist: Dist | None = None,
) -> SupernetScorer:
    """Scorer of a run on the exact train/val split its training used (same val_size and seed: no leakage).

    `data_dir` replaces the data folder the run recorded (needed for imported ImageNet supernets, which record none);
    from an ImageNet-style folder only the calibration and validation images the scorer uses are decoded. Candidates are
    extracted and evaluated on the device the run was loaded to (`load_run(..., device=)`). `dist` shares each batch
    between torchrun ranks (see `SupernetScorer`); every rank reads the same val split.
    """
    from hwnas.data.run_data import load_run_dataset
    from hwnas.supernet.supernet import extract

    data = load_run_dataset(
        run.dataset,
        data_dir or run.data_dir,
        val_size=run.config.val_size,
        seed=run.config.seed,
        resolution=max(run.space.resolutions),
        num_classes=run.space.num_classes,
        train_images=cfg.calib_batches * cfg.calib_batch_size,
        val_images=cfg.val_images or 10_000,
    )
    return SupernetScorer(
        run.space,
        lambda arch: extract(run.supernet, arch),
        train=data.train,
        val=data.split(split),
        cfg=cfg,
        device=next(run.supernet.parameters()).device,
        known=known,
        on_measured=on_measured,
        dist=dist,
    )
