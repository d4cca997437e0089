"""`hwnas train`: train a weight-sharing supernet (ofa | bignas | spos | any mode module in hwnas/train/strategies).

The supernet modes work under `torchrun --nproc-per-node N -m hwnas train ...` (DDP; only rank 0 prints and writes);
the latency-aware modes (fbnet, proxyless, darts, enas) train in one process and refuse torchrun.
Ctrl-C saves a checkpoint first, then exits 130; `--resume` continues from it.

`--resume` takes every option from the run. An option given with it must equal the stored value, except the run's
length (`--epochs`, `--max-steps`: set exactly as for a new run; training continues to the new total with the schedule
stretched, see `hwnas.train.strategy.schedule_step`) and how it runs (`--checkpoint-every`, `--threads`, `--data-dir`,
`--device`, `--amp`: a run trained on a GPU continues on the CPU and back; its `--amp`, if not given, is the stored one,
where the stored `auto` means the default of the device it continues on). Anything else is refused with one line, and
so is an option the mode does not use: no option is silently dropped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hwnas.cli.common import add_device_arg, check_out_dir, positive_float, positive_int
from hwnas.cli.output import print_json
from hwnas.distributed import rank_from_env, world_size_from_env
from hwnas.errors import HwnasError
from hwnas.space import SPACE_NAMES

_DATASETS = ("fashion-mnist", "cifar10", "imagefolder", "synthetic")
_OUTPUTS = ("checkpoint.pt", "config.json", "metrics.csv")
# flag (argparse dest) -> TrainConfig field, for the options a resume may not change
_FIXED = {
    "space": "space",
    "width": "width",
    "dataset": "dataset",
    "mode": "mode",
    "batch_size": "batch_size",
    "lr": "lr",
    "augment": "augment",
    "num_random": "num_random",
    "seed": "seed",
}
_SUPERNET_ONLY = ("augment", "num_random", "max_random_resolution", "checkpoint_every")
# what a resume may change: hwnas.train.config.RESUME_CHANGEABLE (not imported here: it would import torch)
_CHANGEABLE = ("epochs", "max_steps", "checkpoint_every", "threads", "data_dir", "device", "amp")
AMP_CHOICES = ("none", "bf16", "fp16")  # hwnas.train.amp.AMP_MODES (not imported here: it would import torch)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_conflict(name: str, stored: Any, given: Any, run: Path, *, changeable: tuple[str, ...]) -> HwnasError:
    """The one-line refusal of an option that differs from what a resumed run was trained with."""

    def show(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    allowed = ", ".join(flag(c) for c in changeable[:-1]) + f" and {flag(changeable[-1])}"
    return HwnasError(
        f"{flag(name)} {show(given)} differs from the {show(stored)} that {run} was trained with; "
        f"--resume may change only {allowed} (drop {flag(name)}, or train a new run with another --out)"
    )


def _modes() -> tuple[str, ...]:
    """Mode names from the module files in hwnas/train/strategies, found on disk: importing hwnas.train would import
    torch and make every command (even `--help` and input errors) take seconds to start."""
    import importlib.util
    import pkgutil

    from hwnas.cli.train_nas import NAS_MODES

    spec = importlib.util.find_spec("hwnas")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "train" / "strategies"
    found = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))
    return tuple(found) + NAS_MODES


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="train a weight-sharing supernet",
        description="Train a weight-sharing supernet into RUN/ (checkpoint.pt, config.json, metrics.csv).",
    )
    p.add_argument("--space", default=None, help=f"search space ({', '.join(SPACE_NAMES)}; default mbv3-tiny)")
    p.add_argument("--width", type=positive_float, default=None, help="width multiplier (default 1.0)")
    p.add_argument("--dataset", default=None, choices=_DATASETS, help="dataset (required for a new run)")
    p.add_argument("--data-dir", type=Path, default=None, help="dataset folder (default: the system location)")
    p.add_argument("--mode", default=None, help="training mode: " + " | ".join(_modes()) + " (default bignas)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run directory")
    p.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="epochs (default 3; the architecture-search modes: whole epochs, default 6)",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="stop after N optimizer steps (the LR schedule spans them; with --epochs, the smaller wins)",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="per-process batch size (default 64)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 0.1)")
    p.add_argument(
        "--augment",
        choices=("none", "flip", "crop-flip"),
        default=None,
        help="batch augmentation (default crop-flip: pad-4 random crop + flip); none trains faster to a "
        "given accuracy in runs of a few epochs",
    )
    p.add_argument(
        "--num-random",
        type=int,
        default=None,
        help="bignas: random subnets per step besides max and min (default 1); ofa: subnets per step",
    )
    p.add_argument(
        "--max-random-resolution",
        action="store_true",
        default=None,
        help="bignas: train the largest subnet at a random resolution instead of the largest (cheaper)",
    )
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="checkpoint every N steps (default 200)")
    p.add_argument(
        "--seed", type=int, default=None, help="seed of init, data order, augmentation and sampling (default 0)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_device_arg(p)
    p.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        default=None,
        help="mixed precision: none, bf16 or fp16 (fp16: CUDA only, with loss scaling); default bf16 on CUDA, none "
        "on the CPU; a --resume keeps the run's own unless given",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN from its checkpoint with its options; --epochs / --max-steps set a new length "
        "(the schedule continues, stretched), --checkpoint-every, --threads, --data-dir, --device and --amp may "
        "change, any other option must equal the stored one",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing run")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from hwnas.cli.train_nas import add_nas_args

    add_nas_args(p)
    p.set_defaults(handler=_train)


def _config(args: argparse.Namespace, mode: str) -> object:
    from hwnas.train import TrainConfig

    values: dict[str, object] = {
        "space": args.space or "mbv3-tiny",
        "width": args.width or 1.0,
        "mode": mode,
        "dataset": args.dataset,
        "data_dir": str(args.data_dir.resolve()) if args.data_dir else None,
    }
    if args.max_random_resolution:
        values["max_resolution_for_max"] = False
    for name in (
        "epochs",
        "max_steps",
        "batch_size",
        "lr",
        "augment",
        "num_random",
        "checkpoint_every",
        "seed",
        "threads",
        "amp",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.max_steps is not None and args.epochs is None:
        values["epochs"] = 0.0
    return TrainConfig(**values)  # type: ignore[arg-type]


def _resumed_config(stored: Any, args: argparse.Namespace) -> Any:
    """The stored `TrainConfig` with the changes a resume allows; any other option given must equal the stored value.

    `--epochs` / `--max-steps` set the length as for a new run: one given alone replaces both (the other is unset)."""
    import dataclasses

    changeable = _CHANGEABLE
    for name, field in _FIXED.items():
        given = getattr(args, name)
        if given is not None and given != getattr(stored, field):
            raise resume_conflict(name, getattr(stored, field), given, args.out, changeable=changeable)
    if args.max_random_resolution and stored.max_resolution_for_max:
        raise resume_conflict("max_random_resolution", "off", "on", args.out, changeable=changeable)
    changes: dict[str, object] = {}
    for name in ("checkpoint_every", "threads", "amp"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.data_dir is not None:
        changes["data_dir"] = str(args.data_dir.resolve())
    if args.epochs is not None or args.max_steps is not None:
        changes["epochs"] = args.epochs if args.epochs is not None else 0.0
        changes["max_steps"] = args.max_steps if args.max_steps is not None else 0
    return dataclasses.replace(stored, **changes)


def _train(args: argparse.Namespace) -> int:
    if args.space is not None and args.space not in SPACE_NAMES:
        raise HwnasError(f"unknown space {args.space!r}; available spaces: {', '.join(SPACE_NAMES)}")
    if args.resume and args.force:
        raise HwnasError(f"--resume continues {args.out} and --force would start it over; pass only one of them")
    from hwnas.cli.train_nas import NAS_CHANGEABLE, NAS_MODES, NAS_ONLY, run_nas

    payload: dict[str, Any] = {}
    if args.resume:
        from hwnas.train import CHECKPOINT, read_checkpoint

        payload = read_checkpoint(args.out / CHECKPOINT)
        if isinstance(payload.get("source"), dict):
            raise HwnasError(
                f"run {args.out} was imported ({payload['source'].get('kind')} file "
                f"{payload['source'].get('file')}), not trained here: search or export it, or train a new "
                "run with another --out"
            )
        mode = str(payload["config"].get("mode"))
        if args.mode is not None and args.mode != mode:
            raise resume_conflict(
                "mode", mode, args.mode, args.out, changeable=NAS_CHANGEABLE if mode in NAS_MODES else _CHANGEABLE
            )
    else:
        mode = args.mode or "bignas"
        if mode not in _modes():
            raise HwnasError(f"unknown --mode {mode!r}; available: {', '.join(_modes())}")
        if args.dataset is None:
            raise HwnasError(
                f"--dataset is required for a new run (one of {', '.join(_DATASETS)}); a --resume takes it from the run"
            )
    if mode in NAS_MODES:
        if world_size_from_env() > 1:  # every rank would train alone and write the same files
            if rank_from_env() != 0:
                return 2  # rank 0 prints the one line
            supernet_modes = " | ".join(m for m in _modes() if m not in NAS_MODES)
            raise HwnasError(
                f"--mode {mode} trains in one process (its architecture parameters and latency loss are not shared "
                f"between torchrun ranks); run it without torchrun, or train a supernet under torchrun with "
                f"--mode {supernet_modes}"
            )
        unused = [name for name in _SUPERNET_ONLY if getattr(args, name) is not None]
        if unused:
            raise HwnasError(f"{flag(unused[0])} is not used by --mode {mode} (only by the supernet modes); drop it")
        return run_nas(args, mode)
    unused = [name for name in NAS_ONLY if getattr(args, name) is not None]
    if unused:
        raise HwnasError(f"{flag(unused[0])} applies only to --mode {' | '.join(NAS_MODES)}; drop it for --mode {mode}")
    rank = rank_from_env()
    if args.resume:
        from hwnas.train import config_from_dict

        cfg = _resumed_config(config_from_dict(payload["config"]), args)
    else:
        cfg = _config(args, mode)
        if rank == 0:
            check_out_dir(args.out, force=args.force, produces=_OUTPUTS)
    from hwnas.train import train

    result = train(cfg, args.out, resume=args.resume, progress=not args.no_progress, device=args.device)
    if rank != 0:
        return 0
    summary = {
        "run": str(args.out),
        "steps": result.steps,
        "epochs": result.epochs,
        "val_acc_max": round(result.val_acc_max, 4),
        "val_acc_min": round(result.val_acc_min, 4),
        "img_per_s": round(result.img_per_s, 1),
        "torch_device": result.torch_device,
        "amp": result.amp,
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"trained {result.steps} steps ({result.epochs} epochs) into {args.out}: val acc largest "
            f"{result.val_acc_max:.4f}, smallest {result.val_acc_min:.4f} (BN recalibrated); "
            f"{result.img_per_s:.0f} img/s on {result.torch_device} (amp {result.amp})"
        )
    return 0
