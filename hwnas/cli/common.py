"""Argument helpers shared by several subcommands: space selection, arch parsing, budgets, output paths."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.space import SPACE_NAMES, Arch, SpaceSpec, check_arch, get_space

__all__ = [
    "add_space_args",
    "space_from_args",
    "parse_arch",
    "positive_float",
    "positive_int",
    "non_negative_int",
    "check_out_dir",
    "add_threads_arg",
    "apply_threads",
    "add_device_arg",
    "device_spec",
]


def add_space_args(parser: argparse.ArgumentParser, *, default: str = "mbv3") -> None:
    parser.add_argument("--space", default=default, help=f"search space ({', '.join(SPACE_NAMES)}; default {default})")
    parser.add_argument("--width", type=positive_float, default=1.0, help="width multiplier (default 1.0)")


def space_from_args(args: argparse.Namespace) -> SpaceSpec:
    return get_space(args.space, width=args.width)


def parse_arch(space: SpaceSpec, text: str) -> Arch:
    return check_arch(space, Arch.parse(text))


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def budget_list(text: str) -> list[float]:
    try:
        return [positive_float(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"--budgets takes comma-separated positive ms values: {exc}") from None


def unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def check_out_dir(path: Path, *, force: bool, produces: tuple[str, ...] = ()) -> Path:
    """Make sure `path` can hold outputs — creatable, writable, and not about to overwrite results without `--force` —
    without creating anything yet: a command that then fails on bad input leaves no empty folder behind. Writers create
    the folder when they write (`hwnas.atomic`)."""
    if path.exists() and not path.is_dir():
        raise HwnasError(f"output path {path} exists and is not a directory; choose another --out")
    existing = [name for name in produces if (path / name).exists()]
    if existing and not force:
        raise HwnasError(f"{path / existing[0]} already exists; pass --force to overwrite or choose another --out")
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HwnasError(f"cannot create output directory {path}: {ancestor} is not a directory; choose another --out")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise HwnasError(f"output directory {path} is not writable ({ancestor}); choose a writable --out")
    return path


def add_threads_arg(parser: argparse.ArgumentParser, *, default_help: str = "torch's own choice, one per core") -> None:
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"torch CPU threads (default: {default_help}; on a machine other jobs keep busy, fewer threads run "
        "faster)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads when `--threads` was given (torch is imported only then)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def device_spec(text: str) -> str:
    """argparse type of `--device`: cpu, cuda or cuda:N (checked torch-free; availability is checked at run time)."""
    from hwnas.distributed import check_device_spec

    try:
        return check_device_spec(text)
    except HwnasError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--device ")) from None


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """`--device cpu|cuda|cuda:N`: the torch device the command computes on (see hwnas.distributed)."""
    from hwnas.distributed import DEVICE_HELP

    parser.add_argument("--device", type=device_spec, default=None, metavar="DEV", help=DEVICE_HELP)
