"""`hwnas search`: the most accurate subnet of a trained run within T ms on the LUT's device.

Order of work is chosen so that mistakes fail fast: the LUT is loaded and every budget checked against the smallest
achievable latency before torch, the checkpoint or the dataset are touched.

Every measured candidate is appended to `OUT/search.journal.jsonl` as it is measured (`hwnas.search.journal`): Ctrl-C
exits 130 saying so, and `--resume` after Ctrl-C or `kill -9` replays the journal, so nothing is measured twice and the
seeded strategy ends with the winner an uninterrupted run would have found.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from hwnas.cli.common import add_threads_arg, apply_threads, budget_list, check_out_dir, positive_float, positive_int
from hwnas.cli.output import print_json
from hwnas.errors import HwnasError

log = logging.getLogger(__name__)

STRATEGIES = ("evolution", "random", "rl", "differentiable", "scale")
SCORERS = ("measured", "predictor")
# Search effort per scorer: a measured candidate costs seconds (extract, BN recalibration, val), a predicted one
# microseconds, so the predictor runs OFA's own setting (population 100, 500 generations).
MEASURED_DEFAULTS = {"evaluations": 100, "population": 16, "generations": 10_000}
PREDICTOR_DEFAULTS = {"evaluations": 50_000, "population": 100, "generations": 500}


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
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from hwnas.latency.lut import load_lut
    from hwnas.search.journal import JOURNAL, resume_journal
    from hwnas.search.latency_model import check_budget, gene_latency_from_lut
    from hwnas.search.output import OUTPUT_FILES

    apply_threads(args)
    budgets = ([args.budget_ms] if args.budget_ms is not None else []) + (args.budgets or [])
    if not budgets:
        raise HwnasError("give a latency budget with --budget-ms T (or several with --budgets T1,T2)")
    if not args.run.is_dir():
        raise HwnasError(f"run folder {args.run} not found; train one with 'hwnas train ... --out {args.run}'")
    if args.resume and args.strategy == "scale":
        raise HwnasError(
            "--resume continues a measured search; --strategy scale keeps no journal (the LUT rows it "
            "times are cached next to the LUT and reused): rerun it without --resume"
        )
    out_dir = check_out_dir(args.out or args.run, force=args.force or args.resume, produces=OUTPUT_FILES)
    journal = out_dir / JOURNAL
    if args.resume and not journal.is_file():
        raise HwnasError(f"no search journal {journal}: nothing to resume; run the search without --resume")
    if not args.resume and not args.force and journal.exists() and args.strategy != "scale":
        raise HwnasError(
            f"{journal} holds the measurements of an earlier search; pass --resume to continue it "
            f"(same options) or --force to start over"
        )
    table = load_lut(args.lut)
    space = table.space()
    latency = gene_latency_from_lut(table, space)
    for budget in budgets:
        check_budget(latency, budget, where=f"LUT {args.lut}")
    run_config = _check_run_matches(args, table, space)
    if args.strategy == "scale":
        return _scale(args, table, space, budgets, out_dir)

    scorer = _scorer_kind(args, run_config)
    effort = _effort(args, scorer)
    if scorer == "predictor":
        results, extra = _predictor_search(args, space, latency, budgets, effort)
    else:
        identity = _identity(args, budgets, space, effort)
        measured = resume_journal(journal, identity) if args.resume else {}
        results, extra = _run_strategy(
            args, space, latency, budgets, effort, journal=journal, identity=identity, measured=measured
        )
    _write(args, results, out_dir, table, space, {**extra, "scorer": scorer})
    return 0


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


def _scorer(args: argparse.Namespace, space: Any, *, journal: Path, measured: dict[str, float]) -> Any:
    """Measured accuracy on the run's own val split (the split training held out); journaled as it is measured."""
    from hwnas.search.journal import append_measurement
    from hwnas.search.scorer import ScorerConfig, scorer_for_run
    from hwnas.space import space_hash
    from hwnas.train.checkpoint import load_run

    run = load_run(args.run)
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
        on_measured=lambda arch, accuracy: append_measurement(journal, arch, accuracy),
    )


def _run_strategy(
    args: argparse.Namespace,
    space: Any,
    latency: Any,
    budgets: list[float],
    effort: dict[str, int],
    *,
    journal: Path,
    identity: dict[str, Any],
    measured: dict[str, float],
) -> tuple[list[Any], dict[str, Any]]:
    """Every budget's search on one scorer (shared cache). Ctrl-C (KeyboardInterrupt, wherever it lands) loses at most
    the measurement in flight: each one was appended and fsynced as it finished, so there is nothing left to flush."""
    from hwnas.search.journal import write_journal

    scorer = _scorer(args, space, journal=journal, measured=measured)
    write_journal(journal, identity, measured)  # fresh: header only; resumed: compacted, a torn last line cut off
    try:
        results, extra = _strategies(args, space, latency, budgets, scorer, effort)
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


def _context(args: argparse.Namespace, table: Any, space: Any) -> dict[str, Any]:
    from hwnas.search.budgets import search_context

    return search_context(seed=args.seed, run=args.run, lut=args.lut, device=table.device, space=space)


def _write(
    args: argparse.Namespace, results: list[Any], out_dir: Path, table: Any, space: Any, extra: dict[str, Any]
) -> None:
    from hwnas.search.output import write_search_outputs

    context = {**_context(args, table, space), "scorer": extra.pop("scorer"), "extra": extra}
    write_search_outputs(results, out_dir, context=context)
    summaries = [{**r.summary(), "scorer": context["scorer"]} for r in results]
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
    print(f"wrote {out_dir / 'search.json'}, pareto.csv, candidates.csv")


def _scale(args: argparse.Namespace, table: Any, space: Any, budgets: list[float], out_dir: Path) -> int:
    """Compound scaling of the base arch to each budget. Rows the LUT lacks are timed on demand on its device
    (`hwnas.latency.extra_rows`: same protocol as `hwnas profile`, put on the table's time base by re-timed reference
    rows) and cached next to the LUT in `<lut>.extra.csv`, so the next run measures nothing it has seen."""
    import os
    import sys

    from hwnas.atomic import atomic_write_json
    from hwnas.cli.common import parse_arch
    from hwnas.latency.extra_rows import (
        add_extra_rows,
        extra_rows_path,
        load_extra_rows,
        measure_extra_rows,
        with_extra_rows,
    )
    from hwnas.search.scale import ScaleConfig, scale_to_budget, scaled_to_meta
    from hwnas.space import blocks_of

    if args.arch is not None:
        arch = parse_arch(space, args.arch)
    else:
        prior = args.run / "search.json"
        if not prior.is_file():
            raise HwnasError(
                f"--strategy scale needs a base arch: pass --arch ARCH or run a search into {args.run} first"
            )
        arch = parse_arch(space, json.loads(prior.read_text())["arch"])
    cache_file = extra_rows_path(args.lut)
    cache = load_extra_rows(table, args.lut)
    batches: list[Any] = []

    def measure(specs: Any) -> Any:
        nonlocal cache
        if not os.access(cache_file.parent, os.W_OK):
            raise HwnasError(
                f"cannot cache measured rows next to LUT {args.lut} (folder not writable); copy the table "
                f"and its .meta.json to a writable folder and pass that with --lut"
            )
        batch = measure_extra_rows(
            table,
            specs,
            near=[b.key for b in blocks_of(space, arch)],
            runner=_row_runner(table),
            progress=sys.stderr.isatty(),
        )
        cache = add_extra_rows(table, args.lut, batch)
        batches.append(batch)
        return batch.rows

    cfg = ScaleConfig()
    entries: list[dict[str, Any]] = []
    for budget in budgets:
        done = len(batches)
        result = scale_to_budget(with_extra_rows(table, cache), space, arch, budget_ms=budget, cfg=cfg, measure=measure)
        scaled = result.best
        needed = {b.key for s in result.tried for b in blocks_of(s.space, s.arch)} - set(table.rows)
        fresh = {key for b in batches[done:] for key in b.rows}
        measured, reused = len(fresh), len(needed - fresh)
        entries.append(
            {
                "arch": str(scaled.arch),
                "predicted_ms": round(scaled.predicted_ms, 6),
                "accuracy": None,
                "budget_ms": budget,
                "evaluated": 0,
                "seconds": round(result.seconds, 3),
                "phi": scaled.phi,
                "width": scaled.space.width,
                "base_arch": str(arch),
                "rows_measured": measured,
                "rows_reused": reused,
                "time_base_factors": [round(b.factor, 4) for b in batches[done:]],
                "scaled": {**scaled_to_meta(scaled, cfg), "predicted_ms": round(scaled.predicted_ms, 6)},
                "tried": [
                    {
                        "phi": s.phi,
                        "width": s.space.width,
                        "resolution": s.arch.resolution,
                        "depths": [len(x) for x in s.arch.stages],
                        "predicted_ms": round(s.predicted_ms, 6),
                    }
                    for s in result.tried
                ],
                "note": "scaled arch is outside the trained supernet: its accuracy is unknown until it is "
                "fine-tuned ('hwnas export --search' does that)",
            }
        )
    payload = {
        "schema": "hwnas.search/1",
        **entries[0],
        "strategy": "scale",
        **_context(args, table, space),
        "extra_rows": str(cache_file),
        "budgets": entries,
    }
    atomic_write_json(out_dir / "search.json", payload)
    if args.json:
        keys = (
            "arch",
            "predicted_ms",
            "accuracy",
            "budget_ms",
            "evaluated",
            "seconds",
            "phi",
            "width",
            "rows_measured",
            "rows_reused",
            "time_base_factors",
        )
        summary = [{**{k: e[k] for k in keys}, "extra_rows": str(cache_file)} for e in entries]
        print_json(summary[0] if len(summary) == 1 else summary)
    else:
        for e in entries:
            print(
                f"budget {e['budget_ms']:g} ms -> {e['arch']} (phi {e['phi']}, width {e['width']}, "
                f"predicted {e['predicted_ms']:.4f} ms; accuracy unknown until fine-tuned)"
            )
            if e["rows_measured"]:
                factors = ", ".join(f"x{f:.3f}" for f in e["time_base_factors"])
                print(
                    f"  timed {e['rows_measured']} new LUT rows on {table.device} (put on the table's time base "
                    f"by {factors}); reused {e['rows_reused']} cached rows"
                )
            elif e["rows_reused"]:
                print(f"  all {e['rows_reused']} rows beyond the LUT came from the cache")
        print(f"wrote {out_dir / 'search.json'}; extra rows in {cache_file}")
    return 0


def _row_runner(table: Any) -> Any:
    """The runner for the table's profile; int8 profiles quantize each block like 'hwnas export --int8' (None: the
    profile's default runner)."""
    from hwnas.latency.extra_rows import table_profile

    profile = table_profile(table)
    if profile.dtype != "int8":
        return None
    from hwnas.export.int8 import quantize_onnx_bytes
    from hwnas.latency.runtime import make_runner

    return make_runner(profile, quantize=quantize_onnx_bytes)
