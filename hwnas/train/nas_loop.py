"""Architecture-search training (`fbnet`, `proxyless`, `darts`, `enas`): alternating first-order bilevel optimisation.

Each step trains the supernet weights with SGD (cosine LR) on a train batch, then — after `warmup_epochs` of weights
only — α (or the ENAS controller) with Adam on a val batch: the weights fit the training data, the architecture fits
held-out data (DARTS's first-order approximation). The mode module decides how a forward is made (`weight_forward`) and
how α learns (`arch_step`); this loop owns data order, schedules, checkpoints and the run files:

RUN/checkpoint.pt (weights, α, optimisers, generator, history; written atomically at the end of every epoch and of
the run), config.json, metrics.csv (one row per epoch), alpha_history.json (α distributions, E[LAT] and the argmax arch
per epoch) and arch.json = {"arch", "predicted_ms", "target_ms", "expected_ms", "alpha", ...}.

The run is `NasConfig.epochs` epochs of weight steps, or exactly `max_steps` weight steps when that is fewer (the run
may then end mid-epoch; its last epoch row covers the steps taken). `--resume` continues from the last checkpoint with
everything restored, so a resumed run matches an uninterrupted one. A resume may change the length (`epochs`,
`max_steps`): training continues to the new total and the cosine LR continues from where it was, stretched over the
remaining steps (`hwnas.train.strategy.schedule_step`); the temperature and the warm-up count epochs, so they go on
unchanged. The device and the precision (`amp`) may change too: the checkpoint loads onto the CPU and then into the
device that continues, and config.json records the device used (`torch_device`) and the precision (`amp_used`) as facts,
not as the run's identity.
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
from hwnas.data import Dataset, epoch_order, make_batch
from hwnas.distributed import resolve_device
from hwnas.errors import HwnasError
from hwnas.latency import LatencyTable
from hwnas.space import SpaceSpec, space_hash
from hwnas.supernet import Supernet
from hwnas.train.amp import grad_scaler, resolve_amp
from hwnas.train.arch_params import ArchParams, decode_indices
from hwnas.train.checkpoint import CHECKPOINT, FORMAT, read_checkpoint, save_checkpoint
from hwnas.train.config import TrainConfig, config_to_dict
from hwnas.train.expected_latency import arch_latency_ms, decode_near_target, expected_latency_ms, latency_arrays
from hwnas.train.nas_config import NasConfig, nas_config_from_dict, nas_config_to_dict, temperature
from hwnas.train.nas_state import NasState
from hwnas.train.strategy import extend_schedule, schedule_step

__all__ = [
    "NasResult",
    "train_nas",
    "mode_module",
    "pick_resolution",
    "load_nas_checkpoint",
    "weight_steps",
    "run_weight_steps",
]

log = logging.getLogger(__name__)
NAS_FORMAT = 1


@dataclass(frozen=True)
class NasResult:
    run_dir: Path
    arch: str
    predicted_ms: float
    expected_ms: float
    target_ms: float
    epochs: float  # epochs trained (fractional when the run ended mid-epoch)
    steps: int  # weight steps trained
    seconds: float


def mode_module(mode: str) -> ModuleType:
    """`hwnas.train.<mode>`: the module with `weight_forward(state, x)` and `arch_step(state, x, y)`."""
    return importlib.import_module(f"hwnas.train.{mode}")


def pick_resolution(space: SpaceSpec, image_size: int) -> int:
    """The smallest resolution of the space that does not shrink the images (else the largest)."""
    fits = [r for r in space.resolutions if r >= image_size]
    return min(fits) if fits else max(space.resolutions)


def weight_steps(cfg: NasConfig, n_train: int) -> int:
    """Weight steps per epoch: the train split in batches, capped by `steps_per_epoch`."""
    full = n_train // cfg.batch_size
    return full if cfg.steps_per_epoch is None else min(cfg.steps_per_epoch, full)


def run_weight_steps(cfg: NasConfig, steps_per_epoch: int) -> int:
    """Weight steps of the whole run: `epochs` epochs, capped by `max_steps`."""
    total = steps_per_epoch * cfg.epochs
    return min(total, cfg.max_steps) if cfg.max_steps is not None else total


def _cosine_lr(cfg: NasConfig, step: int, total: int) -> float:
    span = cfg.schedule_steps or total
    clock = schedule_step(step, total, knots=cfg.schedule_knots, span=span)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(clock, span) / max(1, span)))


def _snapshot(state: NasState, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    params = state.params
    argmax = params.arch()
    near = decode_indices(
        params,
        decode_near_target(
            params, state.arrays, state.cfg.target_ms, generator=torch.Generator().manual_seed(state.cfg.seed + epoch)
        ),
    )
    probs = params.probs().detach()
    return {
        "epoch": epoch,
        "tau": state.tau,
        "latency_scale": state.scale,
        "expected_ms": float(expected_latency_ms(probs.double(), state.arrays)),
        "arch": str(near),
        "arch_ms": arch_latency_ms(params, state.arrays, near),
        "argmax_arch": str(argmax),
        "argmax_ms": arch_latency_ms(params, state.arrays, argmax),
        "probs": [[[round(float(v), 5) for v in row] for row in stage] for stage in probs.tolist()],
        **{k: v for k, v in metrics.items() if k not in ("expected_ms",)},
    }


def _train_config(cfg: NasConfig, space: SpaceSpec, dataset: Dataset, data_dir: str | None) -> TrainConfig:
    """The supernet-training view of this run, so `load_run` (search, export) reads the checkpoint like any other."""
    return TrainConfig(
        space=space.name,
        width=space.width,
        dataset=dataset.name,
        data_dir=data_dir,
        mode=cfg.mode,
        epochs=float(cfg.epochs),
        max_steps=cfg.max_steps or 0,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        val_size=len(dataset.val),
        seed=cfg.seed,
        channels_last=False,
        amp=cfg.amp,
    )


def _save(
    run_dir: Path,
    state: NasState,
    w_opt: torch.optim.Optimizer,
    epoch: int,
    history: list[dict[str, Any]],
    config: dict[str, Any],
    *,
    scaler: torch.amp.GradScaler,
    train_cfg: TrainConfig,
    step: int,
    total: int,
    preprocess: dict[str, Any],
    partial: dict[str, Any],
) -> None:
    """`partial`: the metric sums and counts of an epoch the checkpoint ends inside (empty at an epoch's end)."""
    space = state.supernet.space
    save_checkpoint(
        run_dir / CHECKPOINT,
        {
            "format": FORMAT,
            "config": config_to_dict(train_cfg),
            "space_hash": space_hash(space),
            "in_channels": space.in_channels,
            "num_classes": space.num_classes,
            "preprocess": preprocess,
            "model": state.supernet.state_dict(),
            "optimizer": w_opt.state_dict(),
            "step": step,
            "total_steps": total,
            "nas": {
                "format": NAS_FORMAT,
                "epoch": epoch,
                "alpha": state.params.logits.detach().cpu().clone(),
                "alpha_optimizer": state.alpha_opt.state_dict(),
                "scaler": scaler.state_dict(),  # fp16 only (empty otherwise): the loss scales reached
                "alpha_scaler": state.alpha_scaler.state_dict() if state.alpha_scaler is not None else {},
                "nu": state.nu,
                "tau": state.tau,
                "baseline": state.baseline if state.baseline is not None else float("nan"),
                "generator": state.generator.get_state(),
                "history": json.dumps(history),
                "config": json.dumps(config),
                "partial": json.dumps(partial),
            },
        },
    )


def load_nas_checkpoint(path: Path) -> dict[str, Any]:
    """Read a search checkpoint (weights_only); a truncated, foreign or plain supernet checkpoint is a one-line error."""
    payload = read_checkpoint(path)
    nas = payload.get("nas")
    if not isinstance(nas, dict) or nas.get("format") != NAS_FORMAT:
        raise HwnasError(
            f"{path} holds no architecture parameters (not a --mode fbnet|proxyless|darts|enas run); "
            "resume it with its own mode or use a new --out"
        )
    return payload


def _write_outputs(run_dir: Path, state: NasState, history: list[dict[str, Any]], config: dict[str, Any]) -> None:
    import pandas as pd

    rows = [{k: v for k, v in h.items() if k != "probs"} for h in history]
    with atomic_path(run_dir / "metrics.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    atomic_write_json(
        run_dir / "alpha_history.json",
        {
            "choices": [[str(c) for c in cs] + ["skip"] for cs in state.params.choices],
            "target_ms": state.cfg.target_ms,
            "epochs": history,
        },
    )
    last = history[-1]
    atomic_write_json(
        run_dir / "arch.json",
        {
            "arch": last["arch"],
            "predicted_ms": last["arch_ms"],
            "target_ms": state.cfg.target_ms,
            "argmax_arch": last["argmax_arch"],
            "argmax_ms": last["argmax_ms"],
            "expected_ms": last["expected_ms"],
            "mode": state.cfg.mode,
            "resolution": state.params.resolution,
            "device": config.get("device"),
            "lut": config.get("lut"),
            "epochs": last["epoch"] + 1,
            "steps": last.get("step"),
            "alpha": state.params.distributions(),
        },
    )


def _resume_config(saved: NasConfig, cfg: NasConfig, run_dir: Path) -> None:
    """Refuse a resume whose config differs from the stored one in anything but the run's length and precision."""
    for f in dataclasses.fields(NasConfig):
        if f.name not in ("epochs", "max_steps", "amp") and getattr(saved, f.name) != getattr(cfg, f.name):
            raise HwnasError(
                f"--resume cannot change {f.name} of {run_dir} (stored {getattr(saved, f.name)!r}, given "
                f"{getattr(cfg, f.name)!r}); only the length (epochs, max_steps) and amp may change, or use a new "
                "--out"
            )


def train_nas(
    space: SpaceSpec,
    dataset: Dataset,
    table: LatencyTable,
    cfg: NasConfig,
    *,
    out_dir: Path,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    data_dir: str | None = None,
    extra_config: dict[str, Any] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    init_from: Path | None = None,
) -> NasResult:
    """Train supernet weights and architecture parameters together; write the run folder (see module docstring).

    With `resume`, `cfg` must equal the stored config except `epochs` and `max_steps`; a new length at or beyond the
    steps already trained continues the run to it. `on_epoch(epoch)` runs after each checkpoint (the end of every
    epoch and of the run; tests raise from it to simulate an interrupted run). `init_from` starts the weights from
    another run's checkpoint of the same space (e.g. a warmed-up or SPOS supernet), so several targets or λ values can
    share one weight warm-up; a resumed run has its own weights and cannot take it. `device`: a torch device or its
    spec (cpu, cuda, cuda:N; None: cuda when available, else cpu — `hwnas.distributed.resolve_device`)."""
    start_time = time.perf_counter()
    device = device if isinstance(device, torch.device) else resolve_device(device)
    amp = resolve_amp(cfg.amp, device)
    run_dir = Path(out_dir)
    mode = mode_module(cfg.mode)
    resolution = cfg.resolution or pick_resolution(space, dataset.image_size)
    if resolution not in space.resolutions:
        raise HwnasError(f"resolution {resolution} not in space {space.name} ({list(space.resolutions)})")
    n_train, n_val = len(dataset.train), len(dataset.val)
    steps = weight_steps(cfg, n_train)
    if steps < 1 or n_val < cfg.batch_size:
        raise HwnasError(
            f"batch size {cfg.batch_size} is larger than the train ({n_train}) or val ({n_val}) split; "
            "lower --batch-size"
        )
    total = run_weight_steps(cfg, steps)
    space_info = {
        "name": space.name,
        "width": space.width,
        "in_channels": space.in_channels,
        "num_classes": space.num_classes,
        "hash": space_hash(space),
    }
    done, payload, ckpt = 0, {}, {}
    if resume:
        if init_from is not None:
            raise HwnasError(f"--init-from starts a new run's weights; {run_dir} is resumed with its own (drop it)")
        payload = load_nas_checkpoint(run_dir / CHECKPOINT)
        ckpt = payload["nas"]
        saved_config = json.loads(ckpt["config"])
        saved = nas_config_from_dict(saved_config.get("nas", {}))
        if saved_config["space"] != space_info:
            raise HwnasError(
                f"{run_dir} was trained on another space ({saved_config['space']['name']} width "
                f"{saved_config['space']['width']}); resume with the same options or use a new --out"
            )
        _resume_config(saved, cfg, run_dir)
        done, saved_total = int(payload["step"]), int(payload["total_steps"])
        knots, span = extend_schedule(
            saved.schedule_knots,
            saved.schedule_steps,
            old_total=saved_total,
            new_total=total,
            done=done,
            where=str(run_dir),
            unit="weight steps",
        )
        cfg = dataclasses.replace(cfg, schedule_knots=knots, schedule_steps=span)
        if total != saved_total:
            log.info(
                "%s: run length %d -> %d weight steps; the LR schedule continues from step %d%s",
                run_dir,
                saved_total,
                total,
                done,
                ""
                if done < saved_total
                else ", where the cosine had reached 0: the "
                "weights stay settled and the new steps train α (a new run with --init-from retrains them)",
            )
    params = ArchParams(space, resolution=resolution).to(device)
    arrays = latency_arrays(table, space, params).to(device)
    config = {
        "kind": "nas",
        "space": space_info,
        "dataset": dataset.name,
        "data_dir": data_dir,
        "preprocess": dataset.preprocess,
        "device": table.device,
        "lut": table.source,
        "resolution": resolution,
        "nas": nas_config_to_dict(cfg),
        "torch_device": str(device),
        "amp_used": amp,
        **(extra_config or {}),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # weight init only; forked so the caller's global RNG is untouched
        supernet = Supernet(space).to(device)
    if init_from is not None:
        source = read_checkpoint(Path(init_from) / CHECKPOINT)
        if source.get("space_hash") != space_hash(space):
            raise HwnasError(
                f"--init-from {init_from} was trained on another space (hash {source.get('space_hash')}, "
                f"need {space_hash(space)}); pick a run of {space.name}"
            )
        supernet.load_state_dict(source["model"])
        config["init_from"] = str(init_from)
    w_opt = torch.optim.SGD(
        supernet.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    a_opt = torch.optim.Adam([params.logits], lr=cfg.alpha_lr, betas=(0.5, 0.999), weight_decay=cfg.alpha_weight_decay)
    scaler, alpha_scaler = grad_scaler(amp, device), grad_scaler(amp, device)
    state = NasState(
        supernet,
        params,
        arrays,
        cfg,
        torch.Generator().manual_seed(cfg.seed),
        a_opt,
        amp=amp,
        alpha_scaler=alpha_scaler if alpha_scaler.is_enabled() else None,
    )
    history: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    if resume:
        if "init_from" in saved_config:
            config["init_from"] = saved_config["init_from"]
        supernet.load_state_dict(payload["model"])
        with torch.no_grad():
            params.logits.copy_(ckpt["alpha"])
        w_opt.load_state_dict(payload["optimizer"])
        a_opt.load_state_dict(ckpt["alpha_optimizer"])
        if scaler.is_enabled() and ckpt.get("scaler"):  # fp16 continues with the loss scales it had reached
            scaler.load_state_dict(ckpt["scaler"])
        if alpha_scaler.is_enabled() and ckpt.get("alpha_scaler"):
            alpha_scaler.load_state_dict(ckpt["alpha_scaler"])
        state.nu, state.baseline = float(ckpt["nu"]), None if math.isnan(ckpt["baseline"]) else float(ckpt["baseline"])
        state.tau = float(ckpt.get("tau", state.tau))
        state.generator.set_state(ckpt["generator"])
        history = json.loads(ckpt["history"])
        partial = json.loads(ckpt.get("partial", "{}"))
        sums, counts = partial.get("sums", {}), partial.get("counts", {})
    train_cfg = _train_config(cfg, space, dataset, data_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume and config != saved_config:  # the checkpoint, not config.json, is what a later resume reads
        _save(
            run_dir,
            state,
            w_opt,
            int(ckpt["epoch"]),
            history,
            config,
            scaler=scaler,
            train_cfg=train_cfg,
            step=done,
            total=total,
            preprocess=dataset.preprocess,
            partial={"sums": sums, "counts": counts} if sums else {},
        )
    atomic_write_json(run_dir / "config.json", config)
    if cfg.warmup_epochs * steps >= total > done:
        log.warning(
            "%s: the run's %d weight steps end within the weight-only warm-up (%d epoch(s) of %d steps), so α "
            "is never trained; pass --warmup-epochs 0 or a smaller --steps-per-epoch to search",
            run_dir,
            total,
            cfg.warmup_epochs,
            steps,
        )
    bar = tqdm(total=total, initial=done, desc=cfg.mode, unit="step", disable=not progress, leave=False)
    for global_step in range(done, total):
        epoch, step = divmod(global_step, steps)
        if step == 0 or global_step == done:  # an epoch starts (or a resumed run re-enters one)
            supernet.train()
            order = epoch_order(n_train, seed=cfg.seed, epoch=epoch)
            val_order = epoch_order(n_val, seed=cfg.seed + 1, epoch=epoch)
            searching = epoch >= cfg.warmup_epochs
            if step == 0:
                sums, counts = {}, {}
            bar.set_description(f"{cfg.mode} epoch {epoch + 1}/{math.ceil(total / steps)}")
        for group in w_opt.param_groups:
            group["lr"] = _cosine_lr(cfg, global_step, total)
        x, y = make_batch(
            dataset.train,
            order[step * cfg.batch_size : (step + 1) * cfg.batch_size],
            resolution=resolution,
            device=device,
        )
        with state.autocast():
            logits = mode.weight_forward(state, x)
        loss = F.cross_entropy(logits.float(), y)
        w_opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(w_opt)  # fp16: true gradients for the clip (every other precision: no-op)
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), 5.0)
        scaler.step(w_opt)
        scaler.update()
        metrics = {"train_loss": float(loss.detach()), "train_acc": float((logits.argmax(1) == y).float().mean())}
        if searching and step % cfg.arch_every == 0:
            if getattr(mode, "USES_TEMPERATURE", False):
                state.tau = temperature(cfg, epoch - cfg.warmup_epochs + step / steps)
            start = (step // cfg.arch_every * cfg.batch_size) % (n_val - cfg.batch_size + 1)
            xv, yv = make_batch(
                dataset.val, val_order[start : start + cfg.batch_size], resolution=resolution, device=device
            )
            metrics.update(mode.arch_step(state, xv, yv))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", lat=f"{metrics.get('expected_ms', float('nan')):.3f}")
        epoch_end, finished = step == steps - 1, global_step + 1 == total
        if not (epoch_end or finished):
            continue
        means = {k: sums[k] / counts[k] for k in sums}
        entry = _snapshot(
            state,
            epoch,
            {
                **means,
                "step": global_step + 1,
                "seconds": time.perf_counter() - start_time,
                "torch_device": str(device),
            },
        )
        if history and history[-1]["epoch"] == epoch:  # the epoch a shorter run or checkpoint ended inside
            history[-1] = entry
        else:
            history.append(entry)
        log.info(
            "epoch %d (step %d/%d): %s", epoch + 1, global_step + 1, total, {k: round(v, 4) for k, v in means.items()}
        )
        _save(
            run_dir,
            state,
            w_opt,
            epoch,
            history,
            config,
            scaler=scaler,
            train_cfg=train_cfg,
            step=global_step + 1,
            total=total,
            preprocess=dataset.preprocess,
            partial={} if epoch_end else {"sums": sums, "counts": counts},
        )
        _write_outputs(run_dir, state, history, config)
        if on_epoch is not None:
            on_epoch(epoch)
    bar.close()
    if not history:
        raise HwnasError(f"{run_dir} has no finished step to report; train it with more --max-steps or --epochs")
    last = history[-1]
    return NasResult(
        run_dir,
        last["arch"],
        last["arch_ms"],
        last["expected_ms"],
        cfg.target_ms,
        round(total / steps, 4),
        total,
        time.perf_counter() - start_time,
    )
