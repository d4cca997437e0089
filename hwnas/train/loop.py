"""The training loop shared by every mode: data order, LR, gradient all-reduce, checkpoints, resume, SIGINT, evaluation.

Everything random is a pure function of (seed, step): the epoch order of `epoch_order(seed, epoch)`, the augmentation
generator and the strategy's `random.Random`. A resumed run therefore replays exactly what the uninterrupted run
would have done, and every DDP rank samples the same subnets without exchanging anything.

A resume may also change the run's length (`epochs`, `max_steps`): training continues to the new total, the LR and
phase schedule continue from where they were, stretched over the remaining steps (`schedule_step`), and config.json
and the checkpoint record the new config so a later plain resume continues to the same total.

DDP (`torchrun --nproc-per-node N -m hwnas train ...`): each rank takes its shard of the global batch; after the
strategy's backward passes the gradients are averaged with one coalesced all-reduce (gloo on CPU, nccl on GPU). This
is DistributedDataParallel's reduction done once per step, which suits sandwich steps (several forwards, one update)
and subnets that leave parameters unused. Only rank 0 writes files.

Device and precision (`hwnas.distributed`, `hwnas.train.amp`): the run computes on `--device` (under torchrun, rank
r on cuda:LOCAL_RANK) with autocast at `cfg.amp` around each forward pass; fp16 adds a GradScaler whose state is
checkpointed. Neither is part of the run's identity: a checkpoint loads onto the CPU first and then into whichever
device resumes it, and config.json records the device and precision used as facts (`torch_device`, `amp_used`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from hwnas.atomic import atomic_write_json
from hwnas.data import Dataset, epoch_order, load_dataset, make_batch
from hwnas.distributed import setup_distributed
from hwnas.errors import HwnasError
from hwnas.space import SpaceSpec, largest, smallest, space_hash
from hwnas.supernet import Supernet
from hwnas.train.amp import grad_scaler, resolve_amp
from hwnas.train.checkpoint import CHECKPOINT, CONFIG, FORMAT, METRICS, read_checkpoint, run_space, save_checkpoint
from hwnas.train.config import TrainConfig, config_from_dict, config_to_dict, resume_conflicts, run_steps
from hwnas.train.evaluate import evaluate_arch
from hwnas.train.metrics import read_metrics, write_metrics
from hwnas.train.strategy import StepContext, extend_schedule, load_strategy, schedule_step

__all__ = ["TrainResult", "train", "steps_per_epoch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run: Path
    steps: int
    epochs: float
    val_acc_max: float
    val_acc_min: float
    img_per_s: float
    train_s: float
    torch_device: str = "cpu"  # where this (re)start trained
    amp: str = "none"  # the precision it trained with


def steps_per_epoch(n_train: int, batch_size: int, world: int) -> int:
    return max(1, n_train // (batch_size * world))


class _Interrupt:
    """SIGINT sets a flag; the loop saves a checkpoint between steps and then raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _param_groups(net: Supernet, cfg: TrainConfig) -> list[dict[str, Any]]:
    """No weight decay on BN/bias vectors and kernel-transform matrices (they start at identity)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in net.named_parameters():
        (no_decay if p.ndim <= 1 or "kernel_transforms" in name else decay).append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _allreduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    used = [p for p in params if p.grad is not None]  # identical on every rank: same subnets sampled
    if not used:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in used])  # type: ignore[union-attr]
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in used:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))  # type: ignore[union-attr,arg-type]
        offset += n


def _build(cfg: TrainConfig, data: Dataset, device: torch.device) -> tuple[SpaceSpec, Supernet]:
    space = run_space(cfg, in_channels=data.channels, num_classes=data.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank and in a resumed run
        net = Supernet(space)
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return space, net


def _evaluate(
    net: Supernet, space: SpaceSpec, data: Dataset, cfg: TrainConfig, device: torch.device
) -> tuple[float, float]:
    """Val accuracy of the smallest and largest subnets after BN recalibration (largest last: its stats stay)."""
    kw = dict(
        recal_batches=cfg.recal_batches,
        batch_size=cfg.eval_batch_size,
        seed=cfg.seed,
        device=device,
        channels_last=cfg.channels_last,
    )
    acc_min = evaluate_arch(net, data, smallest(space), **kw)  # type: ignore[arg-type]
    acc_max = evaluate_arch(net, data, largest(space), **kw)  # type: ignore[arg-type]
    return acc_max, acc_min


def train(
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    data: Dataset | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
    device: str | None = None,
) -> TrainResult:
    """Train a supernet into `out` (checkpoint.pt, config.json, metrics.csv); `resume` continues from checkpoint.pt.

    With `resume`, `cfg` is the stored config, where only the fields in `RESUME_CHANGEABLE` may differ; a new length
    (`epochs`, `max_steps`) at or beyond the steps already trained continues the run to it (see the module docstring).
    `device`: cpu, cuda or cuda:N (None: cuda when available, else cpu; see `hwnas.distributed.resolve_device`).
    `on_step(step)` is called after every completed step (tests use it to interrupt a run).
    """
    job = setup_distributed(device)
    rank, world, dev = job.rank, job.world, job.device
    amp = resolve_amp(cfg.amp, dev)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    strategy = load_strategy(cfg.mode)
    if data is None:
        data = load_dataset(
            cfg.dataset, Path(cfg.data_dir) if cfg.data_dir else None, val_size=cfg.val_size, seed=cfg.seed
        )
    space, net = _build(cfg, data, dev)
    params = [p for p in net.parameters()]
    optimizer = torch.optim.SGD(_param_groups(net, cfg), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    spe = steps_per_epoch(len(data.train), cfg.batch_size, world)
    total = run_steps(cfg, spe)
    start, rows, train_s = 0, [], 0.0
    payload: dict[str, Any] = {}
    if resume:
        payload = read_checkpoint(out / CHECKPOINT)  # on the CPU: the RNG state must stay there, tensors move on load
        saved = config_from_dict(payload["config"])
        conflicts = resume_conflicts(saved, cfg)
        if conflicts:
            name = conflicts[0]
            raise HwnasError(
                f"--resume cannot change {name} of {out} (stored {getattr(saved, name)!r}, given "
                f"{getattr(cfg, name)!r}); drop it to continue the run, or train a new one with another "
                "--out"
            )
        if payload["space_hash"] != space_hash(space):
            raise HwnasError(f"{out / CHECKPOINT} belongs to another space; use another --out")
        start, saved_total = int(payload["step"]), int(payload["total_steps"])
        knots, span = extend_schedule(
            saved.schedule_knots,
            saved.schedule_steps,
            old_total=saved_total,
            new_total=total,
            done=start,
            where=str(out),
        )
        cfg = dataclasses.replace(cfg, schedule_knots=knots, schedule_steps=span)
        if total != saved_total:
            log.info(
                "%s: run length %d -> %d steps; the schedule continues from step %d", out, saved_total, total, start
            )
    span = cfg.schedule_steps or total

    def clock(step: int) -> float:
        return schedule_step(step, total, knots=cfg.schedule_knots, span=span)

    scaler = grad_scaler(amp, dev)
    ctx = StepContext(
        supernet=net,
        space=space,
        cfg=cfg,
        device=dev,
        total_steps=total,
        extra={"optimizer": optimizer},
        amp=amp,
        scaler=scaler if scaler.is_enabled() else None,
    )
    if resume:
        net.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if hasattr(strategy, "load_state_dict"):
            strategy.load_state_dict(ctx, payload.get("strategy", {}))
        if scaler.is_enabled() and payload.get("scaler"):  # fp16 continues with the loss scale it had reached
            scaler.load_state_dict(payload["scaler"])
        train_s = float(payload.get("train_s", 0.0))
        torch.set_rng_state(payload["rng"]["torch"])
        rows = read_metrics(out / METRICS, before_step=start)
        log.info("resuming %s at step %d of %d", out, start, total)
    changed = not resume or cfg != saved

    def checkpoint(step: int) -> None:
        if rank != 0:
            return
        save_checkpoint(
            out / CHECKPOINT,
            {
                "format": FORMAT,
                "config": config_to_dict(cfg),
                "space_hash": space_hash(space),
                "in_channels": space.in_channels,
                "num_classes": space.num_classes,
                "preprocess": data.preprocess,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {"kind": f"{cfg.mode}.lr_factor", "step": step, "lr": optimizer.param_groups[0]["lr"]},
                "strategy": strategy.state_dict(ctx) if hasattr(strategy, "state_dict") else {},
                "scaler": scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
                "step": step,
                "total_steps": total,
                "phase": strategy.phase(clock(max(0, step - 1)), span, cfg),
                "epoch": step / spe,
                "train_s": train_s,
            },
        )
        write_metrics(out / METRICS, rows)

    if rank == 0:  # a changed resume re-saves the checkpoint at once: it, not config.json, is what resumes
        if resume and changed:
            checkpoint(start)
        atomic_write_json(  # always: the device and precision of this (re)start are facts of the run
            out / CONFIG,
            {
                **config_to_dict(cfg),
                "space_hash": space_hash(space),
                "preprocess": data.preprocess,
                "world_size": world,
                "torch_device": str(dev),
                "amp_used": amp,
            },
        )
    bar = tqdm(
        total=total * cfg.batch_size * world,
        initial=start * cfg.batch_size * world,
        unit="img",
        unit_scale=True,
        disable=not progress or rank != 0,
        desc=f"{cfg.mode} {space.name}",
        smoothing=0.1,
        dynamic_ncols=True,
    )
    acc_max = acc_min = float("nan")
    window_imgs, window_t = 0, time.perf_counter()
    with _Interrupt() as interrupt:
        for step in range(start, total):
            epoch, in_epoch = divmod(step, spe)
            phase = strategy.phase(clock(step), span, cfg)
            new_phase = step == 0 or phase != strategy.phase(clock(step - 1), span, cfg)
            if new_phase and hasattr(strategy, "on_phase_start"):
                strategy.on_phase_start(ctx, phase)
            t0 = time.perf_counter()
            order = epoch_order(len(data.train), seed=cfg.seed, epoch=epoch)
            lo = (in_epoch * world + rank) * cfg.batch_size
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 1009 + rank)
            images, labels = make_batch(
                data.train, order[lo : lo + cfg.batch_size], augment=cfg.augment, generator=gen, device=dev
            )
            ctx.step, ctx.phase, ctx.rng = step, phase, random.Random(cfg.seed * 1_000_003 + step)
            lr = cfg.lr * strategy.lr_factor(clock(step), span, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            net.train()
            optimizer.zero_grad(set_to_none=True)
            losses = strategy.train_step(ctx, images, labels)
            if world > 1:
                _allreduce_grads(params, world)
            scaler.unscale_(optimizer)  # fp16: true gradients for the clip (every other precision: no-op)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)  # fp16: skipped when a gradient overflowed, and the scale backs off
            scaler.update()
            if not all(math.isfinite(v) for v in losses.values()):
                raise HwnasError(f"loss became {losses} at step {step + 1}; lower --lr or raise the batch size")
            dt = time.perf_counter() - t0
            train_s += dt
            window_imgs += cfg.batch_size * world
            bar.update(cfg.batch_size * world)
            done = step + 1
            if done % cfg.log_every == 0 or done == total:
                rate = window_imgs / max(1e-9, time.perf_counter() - window_t)
                rows.append(
                    {
                        "step": done,
                        "epoch": round(done / spe, 4),
                        "phase": phase,
                        "lr": lr,
                        "img_per_s": round(rate, 1),
                        "elapsed_s": round(train_s, 1),
                        "torch_device": str(dev),
                        **losses,
                    }
                )
                bar.set_postfix(loss=f"{losses['loss']:.3f}", phase=phase, refresh=False)
                window_imgs, window_t = 0, time.perf_counter()
            epoch_end = done % spe == 0 and cfg.eval_every_epochs > 0 and (done // spe) % cfg.eval_every_epochs == 0
            if rank == 0 and (epoch_end or done == total):
                acc_max, acc_min = _evaluate(net, space, data, cfg, dev)
                rows.append(
                    {
                        "step": done,
                        "epoch": round(done / spe, 4),
                        "phase": phase,
                        "val_acc_max": acc_max,
                        "val_acc_min": acc_min,
                        "elapsed_s": round(train_s, 1),
                    }
                )
                log.info("step %d: val acc largest %.4f smallest %.4f", done, acc_max, acc_min)
                window_t = time.perf_counter()
            if done % cfg.checkpoint_every == 0 or done == total:
                checkpoint(done)
            if on_step is not None:
                on_step(done)
            if interrupt.requested:
                checkpoint(done)
                bar.close()
                raise KeyboardInterrupt
    bar.close()
    if start == total and rank == 0:  # resumed a finished run: report its stored numbers
        acc_max, acc_min = _evaluate(net, space, data, cfg, dev)
    imgs = total * cfg.batch_size * world
    return TrainResult(
        run=out,
        steps=total,
        epochs=round(total / spe, 4),
        val_acc_max=acc_max,
        val_acc_min=acc_min,
        img_per_s=imgs / max(1e-9, train_s),
        train_s=train_s,
        torch_device=str(dev),
        amp=amp,
    )
