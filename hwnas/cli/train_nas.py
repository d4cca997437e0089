"""`hwnas train --mode fbnet|proxyless|darts|enas --lut PATH --target-ms T`: latency-aware architecture search inside
supernet training. Options are added to `hwnas train` by `add_nas_args`; `run_nas` is its handler for these modes.

`--max-steps N` stops after N weight steps (SGD steps of the supernet weights, warm-up included; see
`hwnas.train.nas_config.NasConfig`). `--resume` takes every option from the run (config.json in its checkpoint); as for
the supernet modes, `--epochs` / `--max-steps` set a new length, `--threads`, `--data-dir`, `--device` and `--amp` may
change, and any other option given must equal the stored value.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from hwnas.cli.common import check_out_dir, positive_float, positive_int
from hwnas.cli.output import print_json
from hwnas.errors import HwnasError

NAS_MODES = ("fbnet", "proxyless", "darts", "enas")
NAS_ONLY = (
    "lut",
    "target_ms",
    "latency_loss",
    "latency_weight",
    "adapt_rate",
    "warmup_epochs",
    "steps_per_epoch",
    "alpha_lr",
    "resolution",
    "init_from",
)  # options only these modes use
NAS_CHANGEABLE = ("epochs", "max_steps", "threads", "data_dir", "device", "amp")  # options a resume may change
_LOSSES = ("fbnet", "linear", "mnas", "bisided", "none")
_OUTPUTS = ("checkpoint.pt", "config.json", "metrics.csv", "arch.json", "alpha_history.json")
_CONFIG_FLAGS = (
    "target_ms",
    "latency_loss",
    "latency_weight",
    "adapt_rate",
    "batch_size",
    "lr",
    "seed",
    "warmup_epochs",
    "steps_per_epoch",
    "alpha_lr",
    "resolution",
)  # flags that are NasConfig fields


def add_nas_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("architecture search (--mode fbnet | proxyless | darts | enas)")
    g.add_argument("--lut", type=Path, help="latency table, e.g. latency_tables/cpu-ort-1t/mbv3-tiny.csv")
    g.add_argument("--target-ms", type=positive_float, help="latency target in ms (on the LUT's device)")
    g.add_argument(
        "--latency-loss",
        choices=_LOSSES,
        default=None,
        help="fbnet: CE·a·log(LAT)^b; linear: CE+λ·LAT/T; mnas: CE·(LAT/T)^β over T; bisided: "
        "CE+λ·|LAT/T−1| (lands on the target); default: the mode's paper form",
    )
    g.add_argument("--latency-weight", type=float, default=None, help="b (fbnet), λ (linear/bisided), β (mnas)")
    g.add_argument(
        "--adapt-rate",
        type=float,
        default=None,
        help="dual-ascent rate on the latency weight so the target acts as a budget (default 0: fixed)",
    )
    g.add_argument("--warmup-epochs", type=int, default=None, help="weights-only epochs first (default 1)")
    g.add_argument("--steps-per-epoch", type=positive_int, default=None, help="cap weight steps per epoch")
    g.add_argument("--alpha-lr", type=positive_float, default=None, help="Adam LR of α / the controller (default 0.01)")
    g.add_argument(
        "--resolution", type=positive_int, default=None, help="input resolution searched (default: image size)"
    )
    g.add_argument("--init-from", type=Path, default=None, metavar="RUN", help="start weights from another run")


def _whole_epochs(epochs: float | None, mode: str) -> int | None:
    if epochs is not None and epochs != int(epochs):
        raise HwnasError(
            f"--mode {mode} trains whole epochs, got --epochs {epochs:g}; pass a whole number "
            "(or --max-steps for a part of an epoch)"
        )
    return None if epochs is None else int(epochs)


def _length(cfg: Any, args: argparse.Namespace, mode: str, n_train: int) -> Any:
    """`cfg` with the length the flags give, as for a new run: --epochs alone clears the step cap; --max-steps alone
    keeps enough epochs (at least the current number) for exactly that many steps; both: the smaller wins."""
    from hwnas.train.nas_loop import weight_steps

    epochs = _whole_epochs(args.epochs, mode)
    if epochs is None and args.max_steps is None:
        return cfg
    if epochs is None:
        epochs = max(cfg.epochs, math.ceil(args.max_steps / max(1, weight_steps(cfg, n_train))))
    return dataclasses.replace(cfg, epochs=epochs, max_steps=args.max_steps)


def _same_file(a: Path, b: str | None) -> bool:
    try:
        return b is not None and (str(a) == b or os.path.samefile(a, b))
    except OSError:
        return False


def _check_resume_flags(args: argparse.Namespace, stored: dict[str, Any], cfg: Any) -> None:
    """Refuse any option given with --resume whose value differs from the stored run (defaults compare as resolved)."""

    def conflict(name: str, old: Any, new: Any) -> HwnasError:
        from hwnas.cli.cmd_train import resume_conflict

        return resume_conflict(name, old, new, args.out, changeable=NAS_CHANGEABLE)

    effective = {
        "space": stored["space"]["name"],
        "width": stored["space"]["width"],
        "dataset": stored["dataset"],
        "latency_loss": cfg.loss_form,
        "latency_weight": cfg.weight,
        "resolution": stored["resolution"],
    }
    for name in ("space", "width", "dataset", *_CONFIG_FLAGS):
        given = getattr(args, name, None)
        old = effective[name] if name in effective else getattr(cfg, name)
        if given is not None and given != old:
            raise conflict(name, old, given)
    if args.lut is not None and not _same_file(args.lut, stored.get("lut")):
        raise conflict("lut", stored.get("lut"), args.lut)
    if args.init_from is not None and not _same_file(args.init_from, stored.get("init_from")):
        raise conflict("init_from", stored.get("init_from") or "none", args.init_from)


def run_nas(args: argparse.Namespace, mode: str) -> int:
    import json

    stored: dict[str, Any] = {}
    if args.resume:
        from hwnas.train.checkpoint import CHECKPOINT
        from hwnas.train.nas_config import nas_config_from_dict
        from hwnas.train.nas_loop import load_nas_checkpoint

        stored = json.loads(load_nas_checkpoint(args.out / CHECKPOINT)["nas"]["config"])
        _whole_epochs(args.epochs, mode)
        _check_resume_flags(args, stored, nas_config_from_dict(stored["nas"]))
    elif args.lut is None or args.target_ms is None:
        raise HwnasError(
            f"--mode {mode} needs --lut PATH and --target-ms T (e.g. --lut "
            "latency_tables/cpu-ort-1t/mbv3-tiny.csv --target-ms 2.0)"
        )
    else:
        _whole_epochs(args.epochs, mode)
    import torch

    from hwnas.data import load_dataset
    from hwnas.distributed import resolve_device
    from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut
    from hwnas.space import get_space, with_io
    from hwnas.train.amp import resolve_amp
    from hwnas.train.nas_config import NasConfig, nas_config_from_dict
    from hwnas.train.nas_loop import train_nas

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)  # before minutes of data loading: a missing GPU is a one-line error
    if args.resume:
        cfg = nas_config_from_dict(stored["nas"])
        if args.amp is not None:
            cfg = dataclasses.replace(cfg, amp=args.amp)
        data_dir = str(args.data_dir.resolve()) if args.data_dir else stored.get("data_dir")
        space_name, width, dataset, lut = (
            stored["space"]["name"],
            stored["space"]["width"],
            stored["dataset"],
            Path(args.lut or stored["lut"]),
        )
    else:
        values: dict[str, object] = {"mode": mode}
        for name in _CONFIG_FLAGS:
            if getattr(args, name, None) is not None:
                values[name] = getattr(args, name)
        if args.amp is not None:
            values["amp"] = args.amp
        cfg = NasConfig(**values)  # type: ignore[arg-type]
        data_dir = str(args.data_dir.resolve()) if args.data_dir else None
        space_name, width, dataset, lut = args.space or "mbv3-tiny", args.width or 1.0, args.dataset, args.lut
    resolve_amp(cfg.amp, device)  # fp16 on the CPU is a one-line error before the data loads
    data = load_dataset(dataset, Path(data_dir) if data_dir else None, seed=cfg.seed)
    space = with_io(get_space(space_name, width=width), in_channels=data.channels, num_classes=data.num_classes)
    table = load_lut(lut, space=space)
    if not args.resume:
        low, high = latency_range_ms(LatencyPredictor(table, space))
        if not low <= cfg.target_ms <= high:
            raise HwnasError(
                f"--target-ms {cfg.target_ms} is outside what {space.name} can reach on {table.device} "
                f"({low:.3f}–{high:.3f} ms); pick a target in that range"
            )
        check_out_dir(args.out, force=args.force, produces=_OUTPUTS)
    cfg = _length(cfg, args, mode, len(data.train))
    result = train_nas(
        space,
        data,
        table,
        cfg,
        out_dir=args.out,
        resume=args.resume,
        device=device,
        progress=not args.no_progress,
        data_dir=data_dir,
        init_from=None if args.resume else args.init_from,
    )
    summary = {
        "run": str(args.out),
        "arch": result.arch,
        "predicted_ms": round(result.predicted_ms, 4),
        "expected_ms": round(result.expected_ms, 4),
        "target_ms": result.target_ms,
        "epochs": result.epochs,
        "steps": result.steps,
        "torch_device": str(device),
        "amp": resolve_amp(cfg.amp, device),
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"searched {result.steps} steps ({result.epochs:g} epochs) into {args.out}: {result.arch} predicted "
            f"{result.predicted_ms:.3f} ms (target {result.target_ms:g} ms, E[LAT] {result.expected_ms:.3f} ms); "
            f"see {args.out}/arch.json"
        )
    return 0
