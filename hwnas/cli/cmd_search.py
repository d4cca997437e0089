"""`hwnas search`: the most accurate subnet of a trained run within T ms on the LUT's device.

Order of work is chosen so that mistakes fail fast: the LUT is loaded and every budget checked against the smallest
achievable latency before the checkpoint or the dataset are touched.

Every measured candidate is appended to `OUT/search.journal.jsonl` as it is measured (`hwnas.search.journal`): Ctrl-C
exits 130 saying so, and `--resume` after Ctrl-C or `kill -9` replays the journal, so nothing is measured twice and the
seeded strategy ends with the winner an uninterrupted run would have found.

Under `torchrun` every rank runs this command. The inputs are checked on every rank before the process group forms, so
a bad input fails on all of them alike; rank 0 alone prints that error, logs, writes the journal and the outputs. The
output folder and the journal are rank 0's to check and read; the other ranks receive its verdict and the journal's
accuracies (`hwnas.search.sharding`), so nodes need not share a filesystem for outputs. Only the measured scorer is
sharded: a predictor-scored search runs on rank 0 alone (seconds), and `--strategy scale` refuses torchrun.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.cli.common import add_device_arg, add_threads_arg, budget_list, positive_float, positive_int
from hwnas.cli.output import print_json
from hwnas.cli.search_inputs import (
    MEASURED_DEFAULTS,
    PREDICTOR_DEFAULTS,
    SCORERS,
    STRATEGIES,
    SearchInputs,
    check_inputs,
    check_outputs,
)
from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.distributed import Dist

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("search", help="find the most accurate subnet within a latency budget")
    p.add_argument("--run", type=Path, required=True, help="trained supernet run folder (from 'hwnas train')")
    p.add_argument("--lut", type=Path, required=True, help="latency table CSV (from 'hwnas profile')")
    p.add_argument("--budget-ms", type=positive_float, default=None, help="latency budget in ms")
    p.add_argument("--budgets", type=budget_list, default=None, help="several budgets, e.g. 0.3,0.4,0.5 (shared cache)")
    p.add_argument("--strategy", choices=STRATEGIES, default="evolution", help="search strategy (default evolution)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    p.add_argument(
        "--scorer",
        choices=SCORERS,
        default=None,
        help="how candidates are scored: 'measured' extracts each, recalibrates BN and evaluates it on the "
        "val split; 'predictor' uses the accuracy predictor imported with the run (no data, seconds). "
        "Default: predictor when the run has one, else measured",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="measured scorer: the run's dataset folder if not the one it recorded; required for runs from "
        "'hwnas import-ofa' (an ImageNet-style folder with train/<class>/ and val/<class>/)",
    )
    p.add_argument(
        "--evaluations",
        type=positive_int,
        default=None,
        help=f"distinct candidates scored per budget (default {MEASURED_DEFAULTS['evaluations']} measured, "
        f"{PREDICTOR_DEFAULTS['evaluations']:,} with the predictor)",
    )
    p.add_argument(
        "--population",
        type=positive_int,
        default=None,
        help=f"evolution population (default {MEASURED_DEFAULTS['population']} measured, "
        f"{PREDICTOR_DEFAULTS['population']} with the predictor, as OFA)",
    )
    p.add_argument(
        "--generations",
        type=positive_int,
        default=None,
        help="evolution generations (default: until --evaluations are spent; "
        f"{PREDICTOR_DEFAULTS['generations']} with the predictor, as OFA)",
    )
    p.add_argument(
        "--predictor",
        choices=("none", "ridge", "mlp"),
        default="none",
        help="evolution only: fit an accuracy predictor on the measured archs, evolve on it (100x500), "
        "then measure its top candidates",
    )
    p.add_argument("--val-images", type=positive_int, default=2000, help="val images per evaluation (default 2000)")
    p.add_argument(
        "--calib-images",
        type=positive_int,
        default=512,
        help="training images used to recalibrate BN per candidate (default 512)",
    )
    p.add_argument(
        "--arch", default=None, help="scale only: the arch to scale (default: the winner in RUN/search.json)"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the run folder)")
    p.add_argument("--force", action="store_true", help="overwrite existing search outputs (and start a new journal)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted search from OUT/search.journal.jsonl (same options as the first run)",
    )
    add_threads_arg(p, default_help="torch's own choice, one per core; under torchrun 1 per rank")
    add_device_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    """Every torchrun rank runs this; rank 0 alone prints (errors included), logs and writes."""
    from hwnas.distributed import rank_from_env, world_size_from_env

    rank, world = rank_from_env(), world_size_from_env()
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        inputs = check_inputs(args, world=world)
    except HwnasError as exc:
        if rank == 0:
            raise
        if _first_rank_of_another_node():  # its files may differ from rank 0's: it speaks for its node
            raise HwnasError(f"rank {rank}: {exc}") from None
        return 2  # the same inputs fail the same way on rank 0, which prints the one line
    if inputs.scorer == "none":
        return _scale_on_main(args, inputs)
    try:
        if inputs.scorer == "predictor":
            return _predictor_on_main(args, inputs) if rank == 0 else 0
        return _measured(args, inputs)
    except HwnasError:
        if rank == 0:
            raise
        return 2  # broadcast or agreed on (hwnas.search.sharding): rank 0 prints the same error
    except KeyboardInterrupt:
        if rank == 0:
            raise
        return 130


def _first_rank_of_another_node() -> bool:
    """The local rank 0 of a node other than rank 0's (torchrun's GROUP_RANK is the node's rank)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("GROUP_RANK", "0") not in ("", "0")


def _scale_on_main(args: argparse.Namespace, inputs: SearchInputs) -> int:
    from hwnas.cli.search_scale import scale_search

    out_dir = check_outputs(args)
    context = _context(args, inputs.table, inputs.space, torch_device=None, world_size=1)
    return scale_search(args, inputs.table, inputs.space, inputs.budgets, out_dir, context=context)


def _predictor_on_main(args: argparse.Namespace, inputs: SearchInputs) -> int:
    """The whole predictor-scored search on this process (rank 0 alone under torchrun: it takes seconds, and the
    other ranks would only repeat it)."""
    out_dir = check_outputs(args)
    results, extra = _predictor_search(args, inputs.space, inputs.latency, inputs.budgets, inputs.effort)
    context = _context(args, inputs.table, inputs.space, torch_device="cpu", world_size=1)
    _write(args, results, out_dir, context, {**extra, "scorer": "predictor"})
    return 0


def _measured(args: argparse.Namespace, inputs: SearchInputs) -> int:
    """The measured search on every rank: rank 0 checks the outputs and reads the journal, every rank measures its
    share of each batch, rank 0 writes."""
    from hwnas.distributed import setup_distributed
    from hwnas.search.journal import JOURNAL, resume_journal
    from hwnas.search.sharding import agree, run_on_main

    dist = setup_distributed(args.device)

    def journal_state() -> tuple[Path, dict[str, Any], dict[str, float]]:
        out_dir = check_outputs(args)
        identity = _identity(args, inputs.budgets, inputs.space, inputs.effort)
        measured = resume_journal(out_dir / JOURNAL, identity) if args.resume else {}
        return out_dir, identity, measured

    out_dir, identity, measured = run_on_main(dist, journal_state)
    journal = out_dir / JOURNAL
    scorer = agree(dist, lambda: _scorer(args, inputs.space, dist=dist, journal=journal, measured=measured))
    results, extra = _run_strategy(
        args, inputs, scorer, journal=journal, identity=identity, measured=measured, main=dist.main
    )
    if dist.main:
        context = _context(args, inputs.table, inputs.space, torch_device=str(dist.device), world_size=dist.world)
        _write(args, results, out_dir, context, {**extra, "scorer": "measured"})
    dist.close()
    return 0


def _predictor_search(
    args: argparse.Namespace, space: Any, latency: Any, budgets: list[float], effort: dict[str, int]
) -> tuple[list[Any], dict[str, Any]]:
    """Every budget scored by the run's imported accuracy predictor (vectorised over each generation)."""
    from hwnas.ofa.predictor import predictor_from_state
    from hwnas.train.checkpoint import load_run

    run = load_run(args.run)
    assert run.predictor is not None
    predictor = predictor_from_state(run.predictor["state"], space, where=f"the accuracy predictor of run {args.run}")
    results, extra = _strategies(args, space, latency, budgets, predictor, effort)
    extra["predictor"] = {
        "kind": predictor.kind,
        "file": run.predictor.get("file"),
        "sha256": run.predictor.get("sha256"),
    }
    return results, extra


def _identity(args: argparse.Namespace, budgets: list[float], space: Any, effort: dict[str, int]) -> dict[str, Any]:
    """What makes a journal this search's: the inputs its accuracies depend on (checkpoint, scorer settings, seed) and
    those its path depends on (LUT, strategy, budgets, counts). Files are named by content digest, not path, so a moved
    run folder still resumes and a retrained checkpoint or re-profiled LUT does not."""

    from hwnas.digest import file_sha256
    from hwnas.latency.lut import meta_path
    from hwnas.space import space_hash

    def digest(path: Path) -> str | None:
        return file_sha256(path) if path.is_file() else None

    return {
        "run_checkpoint_sha256": digest(args.run / "checkpoint.pt"),
        "lut_sha256": digest(args.lut),
        "lut_meta_sha256": digest(meta_path(args.lut)),
        "space_hash": space_hash(space),
        "strategy": args.strategy,
        "predictor": args.predictor,
        "seed": args.seed,
        "budgets_ms": budgets,
        "evaluations": effort["evaluations"],
        "population": effort["population"],
        **({"generations": args.generations} if args.generations else {}),
        "val_images": args.val_images,
        "calib_images": args.calib_images,
    }


def _scorer(args: argparse.Namespace, space: Any, *, dist: Dist, journal: Path, measured: dict[str, float]) -> Any:
    """Measured accuracy on the run's own val split (the split training held out), on this rank's device; rank 0
    journals every measurement as it is merged."""
    from hwnas.search.journal import append_measurement
    from hwnas.search.scorer import ScorerConfig, scorer_for_run
    from hwnas.space import space_hash
    from hwnas.train.checkpoint import load_run

    run = load_run(args.run, device=dist.device)
    if space_hash(run.space) != space_hash(space):
        raise HwnasError(
            f"LUT {args.lut} is for space {space.name} (hash {space_hash(space)}) but run {args.run} trained "
            f"{run.space.name} (hash {space_hash(run.space)}); profile this space or pick the matching LUT"
        )
    batch = min(256, args.calib_images)
    cfg = ScorerConfig(
        calib_batches=-(-args.calib_images // batch), calib_batch_size=batch, val_images=args.val_images, seed=args.seed
    )
    return scorer_for_run(
        run,
        cfg=cfg,
        known=measured,
        data_dir=args.data_dir,
        on_measured=(lambda arch, accuracy: append_measurement(journal, arch, accuracy)) if dist.main else None,
        dist=dist,
    )


def _run_strategy(
    args: argparse.Namespace,
    inputs: SearchInputs,
    scorer: Any,
    *,
    journal: Path,
    identity: dict[str, Any],
    measured: dict[str, float],
    main: bool,
) -> tuple[list[Any], dict[str, Any]]:
    """Every budget's search on one scorer (shared cache). Ctrl-C (KeyboardInterrupt, wherever it lands) loses at most
    what was in flight, the measurement (one process) or the batch (torchrun: a batch is journaled once every rank's
    share is merged); everything journaled was fsynced as it was appended, so there is nothing left to flush."""
    from hwnas.search.journal import write_journal

    if main:
        write_journal(journal, identity, measured)  # fresh: header only; resumed: compacted, a torn last line cut off
    try:
        results, extra = _strategies(args, inputs.space, inputs.latency, inputs.budgets, scorer, inputs.effort)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"{len(scorer.cache)} measured candidates are saved in {journal}; rerun the same "
            f"command with --resume to continue"
        ) from None
    extra["cache"] = {"hits": scorer.hits, "misses": scorer.misses}
    extra["journal"] = {"file": journal.name, "reused": len(measured)}
    return results, extra


def _strategies(
    args: argparse.Namespace, space: Any, latency: Any, budgets: list[float], scorer: Any, effort: dict[str, int]
) -> tuple[list[Any], dict[str, Any]]:
    from hwnas.search.budgets import SearchPlan, search_budgets

    plan = SearchPlan(
        strategy=args.strategy,
        evaluations=effort["evaluations"],
        population=effort["population"],
        generations=effort["generations"],
        fitted_predictor=args.predictor,
        seed=args.seed,
        run_dir=args.run,
    )
    return search_budgets(space, scorer, latency, budgets, plan=plan)


def _context(
    args: argparse.Namespace, table: Any, space: Any, *, torch_device: str | None, world_size: int
) -> dict[str, Any]:
    from hwnas.search.budgets import search_context

    return search_context(
        seed=args.seed,
        run=args.run,
        lut=args.lut,
        device=table.device,
        space=space,
        torch_device=torch_device,
        world_size=world_size,
    )


def _write(
    args: argparse.Namespace, results: list[Any], out_dir: Path, context: dict[str, Any], extra: dict[str, Any]
) -> None:
    from hwnas.search.output import write_search_outputs

    context = {**context, "scorer": extra.pop("scorer"), "extra": extra}
    write_search_outputs(results, out_dir, context=context)
    where = {"torch_device": context["torch_device"], "world_size": context["world_size"]}
    summaries = [{**r.summary(), "scorer": context["scorer"], **where} for r in results]
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else summaries)
        return
    for s in summaries:
        print(f"budget {s['budget_ms']:g} ms -> {s['arch']}")
        what = "predicted accuracy" if s["scorer"] == "predictor" else "val accuracy"
        print(
            f"  predicted {s['predicted_ms']:.4f} ms, {what} {s['accuracy']:.4f}, "
            f"{s['evaluated']} evaluated in {s['seconds']:.1f} s"
        )
    ranks = f" on {context['world_size']} ranks" if context["world_size"] > 1 else ""
    print(f"wrote {out_dir / 'search.json'}, pareto.csv, candidates.csv (scored on {context['torch_device']}{ranks})")
