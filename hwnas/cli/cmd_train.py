"""`hwnas train`: train a weight-sharing supernet (ofa | bignas | spos | any mode module in hwnas/train/strategies).

Works under `torchrun --nproc-per-node N -m hwnas train ...` (DDP; only rank 0 prints and writes).
Ctrl-C saves a checkpoint first, then exits 130; `--resume` continues from it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hwnas.cli.common import check_out_dir, positive_float, positive_int
from hwnas.cli.output import print_json
from hwnas.errors import HwnasError
from hwnas.space import SPACE_NAMES

_DATASETS = ("fashion-mnist", "cifar10", "imagefolder", "synthetic")
_OUTPUTS = ("checkpoint.pt", "config.json", "metrics.csv")


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
    p = sub.add_parser("train", help="train a weight-sharing supernet",
                       description="Train a weight-sharing supernet into RUN/ (checkpoint.pt, config.json, metrics.csv).")
    p.add_argument("--space", default="mbv3-tiny", help=f"search space ({', '.join(SPACE_NAMES)}; default mbv3-tiny)")
    p.add_argument("--width", type=positive_float, default=1.0, help="width multiplier (default 1.0)")
    p.add_argument("--dataset", required=True, choices=_DATASETS, help="dataset")
    p.add_argument("--data-dir", type=Path, default=None, help="dataset folder (default: the system location)")
    p.add_argument("--mode", default="bignas", help="training mode: " + " | ".join(_modes()) + " (default bignas)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="run directory")
    p.add_argument("--epochs", type=positive_float, default=None, help="epochs (default 3)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after N steps (the LR schedule spans them)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="per-process batch size (default 64)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 0.1)")
    p.add_argument("--augment", choices=("none", "flip", "crop-flip"), default=None,
                   help="batch augmentation (default crop-flip: pad-4 random crop + flip); none trains faster to a "
                        "given accuracy in runs of a few epochs")
    p.add_argument("--num-random", type=int, default=None,
                   help="bignas: random subnets per step besides max and min (default 1); ofa: subnets per step")
    p.add_argument("--max-random-resolution", action="store_true",
                   help="bignas: train the largest subnet at a random resolution instead of the largest (cheaper)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="checkpoint every N steps (default 200)")
    p.add_argument("--seed", type=int, default=None, help="seed of init, data order, augmentation and sampling (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue RUN from its checkpoint (other options are taken from it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from hwnas.cli.train_nas import add_nas_args

    add_nas_args(p)
    p.set_defaults(handler=_train)


def _config(args: argparse.Namespace) -> object:
    from hwnas.train import TrainConfig

    if args.mode not in _modes():
        raise HwnasError(f"unknown --mode {args.mode!r}; available: {', '.join(_modes())}")
    values: dict[str, object] = {"space": args.space, "width": args.width, "dataset": args.dataset, "mode": args.mode,
                                 "data_dir": str(args.data_dir.resolve()) if args.data_dir else None}
    if args.max_random_resolution:
        values["max_resolution_for_max"] = False
    for name in ("epochs", "max_steps", "batch_size", "lr", "augment", "num_random", "checkpoint_every", "seed", "threads"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.max_steps is not None and args.epochs is None:
        values["epochs"] = 0.0
    return TrainConfig(**values)  # type: ignore[arg-type]


def _train(args: argparse.Namespace) -> int:
    if args.space not in SPACE_NAMES:
        raise HwnasError(f"unknown space {args.space!r}; available spaces: {', '.join(SPACE_NAMES)}")
    from hwnas.cli.train_nas import NAS_MODES, run_nas

    if args.mode in NAS_MODES:
        return run_nas(args)
    rank = int(os.environ.get("RANK", "0"))
    if args.resume:
        from hwnas.train import CHECKPOINT, config_from_dict, read_checkpoint

        payload = read_checkpoint(args.out / CHECKPOINT)
        if isinstance(payload.get("source"), dict):
            raise HwnasError(f"run {args.out} was imported ({payload['source'].get('kind')} file "
                             f"{payload['source'].get('file')}), not trained here: search or export it, or train a new "
                             "run with another --out")
        cfg = config_from_dict(payload["config"])
    else:
        cfg = _config(args)
        if rank == 0:
            check_out_dir(args.out, force=args.force, produces=_OUTPUTS)
    from hwnas.train import train

    result = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)  # type: ignore[arg-type]
    if rank != 0:
        return 0
    summary = {"run": str(args.out), "steps": result.steps, "epochs": result.epochs,
               "val_acc_max": round(result.val_acc_max, 4), "val_acc_min": round(result.val_acc_min, 4),
               "img_per_s": round(result.img_per_s, 1)}
    if args.json:
        print_json(summary)
    else:
        print(f"trained {result.steps} steps ({result.epochs} epochs) into {args.out}: val acc largest "
              f"{result.val_acc_max:.4f}, smallest {result.val_acc_min:.4f} (BN recalibrated); "
              f"{result.img_per_s:.0f} img/s")
    return 0
