"""Architecture-search training (`fbnet`, `proxyless`, `darts`, `enas`): alternating first-order bilevel optimisation.

Each step trains the supernet weights with SGD (cosine LR) on a train batch, then — after `warmup_epochs` of weights
only — α (or the ENAS controller) with Adam on a val batch: the weights fit the training data, the architecture fits
held-out data (DARTS's first-order approximation). The mode module decides how a forward is made (`weight_forward`) and
how α learns (`arch_step`); this loop owns data order, schedules, checkpoints and the run files:

RUN/checkpoint.pt (weights, α, optimisers, generator, history; written atomically every epoch), config.json,
metrics.csv (one row per epoch), alpha_history.json (α distributions, E[LAT] and the argmax arch per epoch) and
arch.json = {"arch", "predicted_ms", "target_ms", "expected_ms", "alpha", ...}. `--resume` continues from the last
completed epoch with everything restored, so a resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from hwnas.atomic import atomic_path, atomic_write_json
from hwnas.train.checkpoint import CHECKPOINT, FORMAT, read_checkpoint, save_checkpoint
from hwnas.train.config import TrainConfig, config_to_dict
from hwnas.data import Dataset, epoch_order, make_batch
from hwnas.errors import HwnasError
from hwnas.latency import LatencyTable
from hwnas.space import SpaceSpec, space_hash
from hwnas.supernet import Supernet
from hwnas.train.arch_params import ArchParams, decode_indices
from hwnas.train.expected_latency import arch_latency_ms, decode_near_target, expected_latency_ms, latency_arrays
from hwnas.train.nas_config import NasConfig, temperature
from hwnas.train.nas_state import NasState

__all__ = ["NasResult", "train_nas", "mode_module", "pick_resolution", "load_nas_checkpoint"]

log = logging.getLogger(__name__)
NAS_FORMAT = 1


@dataclass(frozen=True)
class NasResult:
    run_dir: Path
    arch: str
    predicted_ms: float
    expected_ms: float
    target_ms: float
    epochs: int
    seconds: float


def mode_module(mode: str) -> ModuleType:
    """`hwnas.train.<mode>`: the module with `weight_forward(state, x)` and `arch_step(state, x, y)`."""
    return importlib.import_module(f"hwnas.train.{mode}")


def pick_resolution(space: SpaceSpec, image_size: int) -> int:
    """The smallest resolution of the space that does not shrink the images (else the largest)."""
    fits = [r for r in space.resolutions if r >= image_size]
    return min(fits) if fits else max(space.resolutions)


def _cosine_lr(cfg: NasConfig, step: int, total: int) -> float:
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def _snapshot(state: NasState, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
    params = state.params
    argmax = params.arch()
    near = decode_indices(params, decode_near_target(params, state.arrays, state.cfg.target_ms,
                                                     generator=torch.Generator().manual_seed(state.cfg.seed + epoch)))
    probs = params.probs().detach()
    return {"epoch": epoch, "tau": state.tau, "latency_scale": state.scale,
            "expected_ms": float(expected_latency_ms(probs.double(), state.arrays)),
            "arch": str(near), "arch_ms": arch_latency_ms(params, state.arrays, near),
            "argmax_arch": str(argmax), "argmax_ms": arch_latency_ms(params, state.arrays, argmax),
            "probs": [[[round(float(v), 5) for v in row] for row in stage] for stage in probs.tolist()],
            **{k: v for k, v in metrics.items() if k not in ("expected_ms",)}}


def _train_config(cfg: NasConfig, space: SpaceSpec, dataset: Dataset, data_dir: str | None) -> TrainConfig:
    """The supernet-training view of this run, so `load_run` (search, export) reads the checkpoint like any other."""
    return TrainConfig(space=space.name, width=space.width, dataset=dataset.name, data_dir=data_dir, mode=cfg.mode,
                       epochs=float(cfg.epochs), batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay, val_size=len(dataset.val), seed=cfg.seed, channels_last=False)


def _save(run_dir: Path, state: NasState, w_opt: torch.optim.Optimizer, epoch: int, history: list[dict[str, Any]],
          config: dict[str, Any], *, train_cfg: TrainConfig, steps: int, preprocess: dict[str, Any]) -> None:
    space = state.supernet.space
    save_checkpoint(run_dir / CHECKPOINT, {
        "format": FORMAT, "config": config_to_dict(train_cfg), "space_hash": space_hash(space),
        "in_channels": space.in_channels, "num_classes": space.num_classes, "preprocess": preprocess,
        "model": state.supernet.state_dict(), "optimizer": w_opt.state_dict(),
        "step": (epoch + 1) * steps, "total_steps": state.cfg.epochs * steps,
        "nas": {"format": NAS_FORMAT, "epoch": epoch, "alpha": state.params.logits.detach().cpu().clone(),
                "alpha_optimizer": state.alpha_opt.state_dict(), "nu": state.nu,
                "baseline": state.baseline if state.baseline is not None else float("nan"),
                "generator": state.generator.get_state(), "history": json.dumps(history), "config": json.dumps(config)},
    })


def load_nas_checkpoint(path: Path) -> dict[str, Any]:
    """Read a search checkpoint (weights_only); a truncated, foreign or plain supernet checkpoint is a one-line error."""
    payload = read_checkpoint(path)
    nas = payload.get("nas")
    if not isinstance(nas, dict) or nas.get("format") != NAS_FORMAT:
        raise HwnasError(f"{path} holds no architecture parameters (not a --mode fbnet|proxyless|darts|enas run); "
                         "resume it with its own mode or use a new --out")
    return payload


def _write_outputs(run_dir: Path, state: NasState, history: list[dict[str, Any]], config: dict[str, Any]) -> None:
    import pandas as pd

    rows = [{k: v for k, v in h.items() if k != "probs"} for h in history]
    with atomic_path(run_dir / "metrics.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    atomic_write_json(run_dir / "alpha_history.json", {"choices": [[str(c) for c in cs] + ["skip"]
                                                                   for cs in state.params.choices],
                                                       "target_ms": state.cfg.target_ms, "epochs": history})
    last = history[-1]
    atomic_write_json(run_dir / "arch.json", {
        "arch": last["arch"], "predicted_ms": last["arch_ms"], "target_ms": state.cfg.target_ms,
        "argmax_arch": last["argmax_arch"], "argmax_ms": last["argmax_ms"],
        "expected_ms": last["expected_ms"], "mode": state.cfg.mode, "resolution": state.params.resolution,
        "device": config.get("device"), "lut": config.get("lut"), "epochs": last["epoch"] + 1,
        "alpha": state.params.distributions(),
    })


def train_nas(space: SpaceSpec, dataset: Dataset, table: LatencyTable, cfg: NasConfig, *, out_dir: Path,
              resume: bool = False, device: torch.device | None = None, progress: bool = True,
              data_dir: str | None = None, extra_config: dict[str, Any] | None = None,
              on_epoch: Callable[[int], None] | None = None, init_from: Path | None = None) -> NasResult:
    """Train supernet weights and architecture parameters together; write the run folder (see module docstring).

    `on_epoch(epoch)` runs after each epoch's checkpoint (tests raise from it to simulate an interrupted run).
    `init_from` starts the weights from another run's checkpoint of the same space (e.g. a warmed-up or SPOS supernet),
    so several targets or λ values can share one weight warm-up."""
    start_time = time.perf_counter()
    device = device or torch.device("cpu")
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mode = mode_module(cfg.mode)
    resolution = cfg.resolution or pick_resolution(space, dataset.image_size)
    if resolution not in space.resolutions:
        raise HwnasError(f"resolution {resolution} not in space {space.name} ({list(space.resolutions)})")
    params = ArchParams(space, resolution=resolution).to(device)
    arrays = latency_arrays(table, space, params).to(device)
    config = {"kind": "nas", "space": {"name": space.name, "width": space.width, "in_channels": space.in_channels,
                                       "num_classes": space.num_classes, "hash": space_hash(space)},
              "dataset": dataset.name, "data_dir": data_dir, "preprocess": dataset.preprocess, "device": table.device,
              "lut": table.source, "resolution": resolution, "nas": dataclasses.asdict(cfg), **(extra_config or {})}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # weight init only; forked so the caller's global RNG is untouched
        supernet = Supernet(space).to(device)
    if init_from is not None and not resume:
        source = read_checkpoint(Path(init_from) / CHECKPOINT)
        if source.get("space_hash") != space_hash(space):
            raise HwnasError(f"--init-from {init_from} was trained on another space (hash {source.get('space_hash')}, "
                             f"need {space_hash(space)}); pick a run of {space.name}")
        supernet.load_state_dict(source["model"])
        config["init_from"] = str(init_from)
    w_opt = torch.optim.SGD(supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                            nesterov=True)
    a_opt = torch.optim.Adam([params.logits], lr=cfg.alpha_lr, betas=(0.5, 0.999), weight_decay=cfg.alpha_weight_decay)
    state = NasState(supernet, params, arrays, cfg, torch.Generator().manual_seed(cfg.seed), a_opt)
    history: list[dict[str, Any]] = []
    first_epoch = 0
    if resume:
        payload = load_nas_checkpoint(run_dir / CHECKPOINT)
        ckpt = payload["nas"]
        saved = json.loads(ckpt["config"])
        if saved.get("nas", {}) | {"epochs": cfg.epochs} != config["nas"] or saved["space"] != config["space"]:
            raise HwnasError(f"{run_dir} was trained with another configuration; resume with the same options "
                             "(only --epochs may grow) or use a new --out")
        supernet.load_state_dict(payload["model"])
        with torch.no_grad():
            params.logits.copy_(ckpt["alpha"])
        w_opt.load_state_dict(payload["optimizer"])
        a_opt.load_state_dict(ckpt["alpha_optimizer"])
        state.nu, state.baseline = float(ckpt["nu"]), None if math.isnan(ckpt["baseline"]) else float(ckpt["baseline"])
        state.generator.set_state(ckpt["generator"])
        history = json.loads(ckpt["history"])
        first_epoch = int(ckpt["epoch"]) + 1
    atomic_write_json(run_dir / "config.json", config)
    n_train, n_val = len(dataset.train), len(dataset.val)
    steps = n_train // cfg.batch_size if cfg.steps_per_epoch is None else min(cfg.steps_per_epoch, n_train // cfg.batch_size)
    if steps < 1 or n_val < cfg.batch_size:
        raise HwnasError(f"batch size {cfg.batch_size} is larger than the train ({n_train}) or val ({n_val}) split; "
                         "lower --batch-size")
    total = steps * cfg.epochs
    train_cfg = _train_config(cfg, space, dataset, data_dir)
    for epoch in range(first_epoch, cfg.epochs):
        supernet.train()
        order = epoch_order(n_train, seed=cfg.seed, epoch=epoch)
        val_order = epoch_order(n_val, seed=cfg.seed + 1, epoch=epoch)
        searching = epoch >= cfg.warmup_epochs
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        bar = tqdm(range(steps), desc=f"{cfg.mode} epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step in bar:
            global_step = epoch * steps + step
            for group in w_opt.param_groups:
                group["lr"] = _cosine_lr(cfg, global_step, total)
            x, y = make_batch(dataset.train, order[step * cfg.batch_size : (step + 1) * cfg.batch_size],
                              resolution=resolution, device=device)
            logits = mode.weight_forward(state, x)
            loss = F.cross_entropy(logits, y)
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(supernet.parameters(), 5.0)
            w_opt.step()
            metrics = {"train_loss": float(loss.detach()), "train_acc": float((logits.argmax(1) == y).float().mean())}
            if searching and step % cfg.arch_every == 0:
                if getattr(mode, "USES_TEMPERATURE", False):
                    state.tau = temperature(cfg, epoch - cfg.warmup_epochs + step / steps)
                start = (step // cfg.arch_every * cfg.batch_size) % (n_val - cfg.batch_size + 1)
                xv, yv = make_batch(dataset.val, val_order[start : start + cfg.batch_size], resolution=resolution,
                                    device=device)
                metrics.update(mode.arch_step(state, xv, yv))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            if step % 10 == 0:
                bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", lat=f"{metrics.get('expected_ms', float('nan')):.3f}")
        means = {k: sums[k] / counts[k] for k in sums}
        history.append(_snapshot(state, epoch, {**means, "seconds": time.perf_counter() - start_time}))
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, {k: round(v, 4) for k, v in means.items()})
        _save(run_dir, state, w_opt, epoch, history, config, train_cfg=train_cfg, steps=steps,
              preprocess=dataset.preprocess)
        _write_outputs(run_dir, state, history, config)
        if on_epoch is not None:
            on_epoch(epoch)
    if not history:
        raise HwnasError(f"{run_dir} already finished {cfg.epochs} epochs; pass a larger --epochs to continue")
    last = history[-1]
    return NasResult(run_dir, last["arch"], last["arch_ms"], last["expected_ms"], cfg.target_ms, cfg.epochs,
                     time.perf_counter() - start_time)
