"""`hwnas train --mode fbnet|proxyless|darts|enas --lut PATH --target-ms T`: latency-aware architecture search inside
supernet training. Options are added to `hwnas train` by `add_nas_args`; `run_nas` is its handler for these modes."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli.common import check_out_dir, positive_float, positive_int
from hwnas.cli.output import print_json
from hwnas.errors import HwnasError

NAS_MODES = ("fbnet", "proxyless", "darts", "enas")
_LOSSES = ("fbnet", "linear", "mnas", "bisided", "none")
_OUTPUTS = ("checkpoint.pt", "config.json", "metrics.csv", "arch.json", "alpha_history.json")


def add_nas_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("architecture search (--mode fbnet | proxyless | darts | enas)")
    g.add_argument("--lut", type=Path, help="latency table, e.g. latency_tables/cpu-ort-1t/mbv3-tiny.csv")
    g.add_argument("--target-ms", type=positive_float, help="latency target in ms (on the LUT's device)")
    g.add_argument("--latency-loss", choices=_LOSSES, default=None,
                   help="fbnet: CE·a·log(LAT)^b; linear: CE+λ·LAT/T; mnas: CE·(LAT/T)^β over T; bisided: "
                        "CE+λ·|LAT/T−1| (lands on the target); default: the mode's paper form")
    g.add_argument("--latency-weight", type=float, default=None, help="b (fbnet), λ (linear/bisided), β (mnas)")
    g.add_argument("--adapt-rate", type=float, default=0.0,
                   help="dual-ascent rate on the latency weight so the target acts as a budget (default 0: fixed)")
    g.add_argument("--warmup-epochs", type=int, default=None, help="weights-only epochs first (default 1)")
    g.add_argument("--steps-per-epoch", type=positive_int, default=None, help="cap weight steps per epoch")
    g.add_argument("--alpha-lr", type=positive_float, default=None, help="Adam LR of α / the controller (default 0.01)")
    g.add_argument("--resolution", type=positive_int, default=None, help="input resolution searched (default: image size)")
    g.add_argument("--init-from", type=Path, default=None, metavar="RUN", help="start weights from another run")


def run_nas(args: argparse.Namespace) -> int:
    if args.lut is None or args.target_ms is None:
        raise HwnasError(f"--mode {args.mode} needs --lut PATH and --target-ms T (e.g. --lut "
                         "latency_tables/cpu-ort-1t/mbv3-tiny.csv --target-ms 2.0)")
    import torch

    from hwnas.data import load_dataset
    from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut
    from hwnas.space import get_space, with_io
    from hwnas.train.nas_config import NasConfig
    from hwnas.train.nas_loop import train_nas

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed or 0)
    space = with_io(get_space(args.space, width=args.width), in_channels=data.channels, num_classes=data.num_classes)
    table = load_lut(args.lut, space=space)
    low, high = latency_range_ms(LatencyPredictor(table, space))
    if not low <= args.target_ms <= high:
        raise HwnasError(f"--target-ms {args.target_ms} is outside what {space.name} can reach on {table.device} "
                         f"({low:.3f}–{high:.3f} ms); pick a target in that range")
    values: dict[str, object] = {"mode": args.mode, "target_ms": args.target_ms, "latency_loss": args.latency_loss,
                                 "latency_weight": args.latency_weight, "adapt_rate": args.adapt_rate}
    for name in ("epochs", "batch_size", "lr", "seed", "warmup_epochs", "steps_per_epoch", "alpha_lr", "resolution"):
        if getattr(args, name, None) is not None:
            values[name] = int(args.epochs) if name == "epochs" else getattr(args, name)
    cfg = NasConfig(**values)  # type: ignore[arg-type]
    if not args.resume:
        check_out_dir(args.out, force=args.force, produces=_OUTPUTS)
    result = train_nas(space, data, table, cfg, out_dir=args.out, resume=args.resume, progress=not args.no_progress,
                       data_dir=str(args.data_dir.resolve()) if args.data_dir else None, init_from=args.init_from)
    summary = {"run": str(args.out), "arch": result.arch, "predicted_ms": round(result.predicted_ms, 4),
               "expected_ms": round(result.expected_ms, 4), "target_ms": result.target_ms, "epochs": result.epochs}
    if args.json:
        print_json(summary)
    else:
        print(f"searched {result.epochs} epochs into {args.out}: {result.arch} predicted {result.predicted_ms:.3f} ms "
              f"(target {result.target_ms:g} ms, E[LAT] {result.expected_ms:.3f} ms); see {args.out}/arch.json")
    return 0
