"""What `hwnas search` checks before it runs: arguments, the LUT and budgets, the run against the LUT, the scorer and
its device, and the output folder. Every torchrun rank runs `check_inputs` alike before the ranks connect, so a bad
input fails on all of them the same way; `check_outputs` is rank 0's alone (only rank 0 writes).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.cli.common import apply_threads, check_out_dir
from hwnas.errors import HwnasError

__all__ = [
    "MEASURED_DEFAULTS",
    "PREDICTOR_DEFAULTS",
    "SCORERS",
    "STRATEGIES",
    "SearchInputs",
    "check_inputs",
    "check_outputs",
]

STRATEGIES = ("evolution", "random", "rl", "differentiable", "scale")
SCORERS = ("measured", "predictor")
# Search effort per scorer: a measured candidate costs seconds (extract, BN recalibration, val), a predicted one
# microseconds, so the predictor runs OFA's own setting (population 100, 500 generations).
MEASURED_DEFAULTS = {"evaluations": 100, "population": 16, "generations": 10_000}
PREDICTOR_DEFAULTS = {"evaluations": 50_000, "population": 100, "generations": 500}


@dataclass(frozen=True, slots=True)
class SearchInputs:
    """What the checks every rank runs before any process group forms found: the same on every rank."""

    budgets: list[float]
    table: Any  # LatencyTable
    space: Any  # SpaceSpec
    latency: Any  # GeneLatency
    scorer: str  # "measured" | "predictor" | "none" (--strategy scale)
    effort: dict[str, int]


def check_inputs(args: argparse.Namespace, *, world: int) -> SearchInputs:
    """Argument and input-file checks every rank runs alike, torch-free up to the device check."""
    from hwnas.latency.lut import load_lut
    from hwnas.search.latency_model import check_budget, gene_latency_from_lut

    apply_threads(args)
    budgets = ([args.budget_ms] if args.budget_ms is not None else []) + (args.budgets or [])
    if not budgets:
        raise HwnasError("give a latency budget with --budget-ms T (or several with --budgets T1,T2)")
    if not args.run.is_dir():
        raise HwnasError(f"run folder {args.run} not found; train one with 'hwnas train ... --out {args.run}'")
    if args.strategy == "scale":
        _check_scale_args(args, world=world)
    table = load_lut(args.lut)
    space = table.space()
    latency = gene_latency_from_lut(table, space)
    for budget in budgets:
        check_budget(latency, budget, where=f"LUT {args.lut}")
    run_config = _check_run_matches(args, table, space)
    if args.strategy == "scale":
        return SearchInputs(budgets, table, space, latency, "none", {})
    scorer = _scorer_kind(args, run_config)
    if scorer == "measured":
        _check_measured_device(args)
    elif args.device is not None and args.device != "cpu":
        raise HwnasError(
            f"--device {args.device} is for the measured scorer; the run's accuracy predictor scores on the CPU "
            "in seconds: drop --device or pass --scorer measured"
        )
    return SearchInputs(budgets, table, space, latency, scorer, _effort(args, scorer))


def _check_scale_args(args: argparse.Namespace, *, world: int) -> None:
    if args.resume:
        raise HwnasError(
            "--resume continues a measured search; --strategy scale keeps no journal (the LUT rows it "
            "times are cached next to the LUT and reused): rerun it without --resume"
        )
    if world > 1:
        raise HwnasError(
            "--strategy scale times LUT rows on this machine and has nothing to share between torchrun ranks; "
            "run it as one process ('hwnas search ...' without torchrun)"
        )
    if args.device is not None:
        raise HwnasError(
            f"--device {args.device} is for the measured scorer; --strategy scale computes no accuracy (its LUT rows "
            "are timed on the table's own device profile): drop --device"
        )


def _check_measured_device(args: argparse.Namespace) -> None:
    """The measured scorer's --device exists here; under torchrun with several ranks per node, each rank takes its
    own GPU, so one fixed cuda:N for all of them is refused."""
    from hwnas.distributed import resolve_device

    try:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        local_world = 1
    if args.device is not None and args.device.startswith("cuda:") and local_world > 1:
        raise HwnasError(
            f"--device {args.device} would put all {local_world} ranks of this node on one GPU; pass --device cuda "
            "(each rank takes cuda:LOCAL_RANK)"
        )
    resolve_device(args.device)


def check_outputs(args: argparse.Namespace) -> Path:
    """The output folder, checked before anything heavy runs (rank 0's folder: only rank 0 writes)."""
    from hwnas.search.journal import JOURNAL
    from hwnas.search.output import OUTPUT_FILES

    out_dir = check_out_dir(args.out or args.run, force=args.force or args.resume, produces=OUTPUT_FILES)
    journal = out_dir / JOURNAL
    if args.resume and not journal.is_file():
        raise HwnasError(f"no search journal {journal}: nothing to resume; run the search without --resume")
    if not args.resume and not args.force and journal.exists() and args.strategy != "scale":
        raise HwnasError(
            f"{journal} holds the measurements of an earlier search; pass --resume to continue it "
            f"(same options) or --force to start over"
        )
    return out_dir


def _check_run_matches(args: argparse.Namespace, table: Any, space: Any) -> dict[str, Any]:
    """The run's config.json, checked against the LUT's space before anything heavy is loaded: a run of another
    space or width is told which table it needs and the command that builds it."""
    from hwnas.latency.lut import lut_path
    from hwnas.space import get_space, space_hash, with_io
    from hwnas.train.checkpoint import CONFIG, read_config_json

    if not (args.run / CONFIG).is_file():
        return {}  # the checkpoint alone still names its space; load_run checks it against the LUT's
    config = read_config_json(args.run)
    run_hash = config.get("space_hash")
    if run_hash is None or run_hash == space_hash(space):
        return config
    try:
        run_space = with_io(
            get_space(str(config["space"]), width=float(config.get("width", 1.0))),
            in_channels=int(config["in_channels"]),
            num_classes=int(config["num_classes"]),
        )
    except (KeyError, TypeError, ValueError, HwnasError):
        run_space = None
    if run_space is None or space_hash(run_space) != run_hash:
        raise HwnasError(
            f"LUT {args.lut} is for space {space.name} (hash {space_hash(space)}) but run {args.run} "
            f"trained another (hash {run_hash}); profile the run's space or pick the matching LUT"
        )
    width = f" --width {run_space.width:g}" if run_space.width != 1.0 else ""
    need = lut_path(args.lut.parent.parent, table.device, run_space)
    raise HwnasError(
        f"run {args.run} is space {run_space.name} at width {run_space.width}, LUT {args.lut} is for "
        f"{space.name} at width {space.width}: it needs {need}; build it with 'hwnas profile --device "
        f"{table.device} --space {run_space.name}{width}'"
    )


def _scorer_kind(args: argparse.Namespace, run_config: dict[str, Any]) -> str:
    has_predictor = bool(run_config.get("predictor"))
    scorer = args.scorer or ("predictor" if has_predictor else "measured")
    if scorer == "predictor":
        if not has_predictor:
            raise HwnasError(
                f"run {args.run} has no accuracy predictor; import one with 'hwnas import-ofa ... "
                "--predictor ACC.pth' or use --scorer measured"
            )
        if args.predictor != "none":
            raise HwnasError(
                f"--predictor {args.predictor} fits a predictor on measured candidates; it does not combine "
                "with --scorer predictor (the run's imported predictor)"
            )
        if args.resume:
            raise HwnasError(
                "--resume continues a measured search; a predictor-scored search takes seconds: rerun it "
                "without --resume"
            )
        if args.data_dir is not None:
            raise HwnasError("--data-dir is for the measured scorer; --scorer predictor reads no data")
    return scorer


def _effort(args: argparse.Namespace, scorer: str) -> dict[str, int]:
    """Evaluations, population and generations: what the user gave, else the scorer's defaults."""
    defaults = PREDICTOR_DEFAULTS if scorer == "predictor" else MEASURED_DEFAULTS
    given = {"evaluations": args.evaluations, "population": args.population, "generations": args.generations}
    return {k: v if v is not None else defaults[k] for k, v in given.items()}
