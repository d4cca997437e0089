"""Result quality on Fashion-MNIST (issue #9, benchmark 4): hwnas winners vs torchvision MobileNetV3 vs random search.

What is compared, all on the supernet run's own data pipeline and test split, all timed the same way:
  - baselines: torchvision `mobilenet_v3_small` / `mobilenet_v3_large` at width 0.5 / 0.75 / 1.0, adapted like `mbv3-tiny`
    (1-channel stem, stride 1), trained from scratch with the run's recipe (SGD, its lr / momentum / weight decay / label
    smoothing / clip / batch size and its mode's LR schedule) for as many epochs as the hwnas pipeline trains in total
    (supernet epochs + fine-tune epochs), at one resolution of the space (32 px by default: see `--resolution`), then BN
    re-estimated on train batches exactly as the exporter does for a subnet;
  - hwnas winners: evolution search on the trained supernet under each latency budget (val split), then the exporter's
    own pipeline (`export_run`: extract -> BN recalibration -> KD fine-tune for `--finetune-epochs` -> test accuracy ->
    ONNX with parity check);
  - random-search winners with the same evaluation count, through the same export pipeline.
Every model's ONNX file is then timed whole on `cpu-ort-1t` in ONE interleaved `run_protocol` call (the LUT's protocol:
global warm-up, passes in fresh random order, median of pass medians), so machine drift hits all models alike.

Budgets (ms predicted by the LUT): one per baseline whose latency falls inside the LUT's [min, max] range once converted
to LUT ms (measured here on untrained copies, divided by the measured/predicted ratio of a few probe subnets, because
the LUT may come from another CPU), filled up to `--min-budgets` (3) with `--fractions` of the range. `--budgets`
overrides the rule.

    flock /tmp/hwnas-heavy.lock .venv/bin/python bench/bench_baselines.py --run runs/bignas-tiny \
        --lut latency_tables/cpu-ort-1t/mbv3-tiny.csv [--seeds 2] [--finetune-epochs 1]
    .venv/bin/python bench/bench_baselines.py --quick    # smoke run; trains a 5-step supernet when RUN is missing

Finished items (trained baselines, searches, exports) are kept under `--work` and reused by a re-run with the same
settings, so an interrupted run continues. Writes bench/results/baselines.json and bench/results/baselines_pareto.png
(`--quick` writes under WORK/quick/ instead, so a smoke run never replaces real results).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from baseline_nets import BASELINES, BaselineSpec, TrainPlan, build_baseline, run_augment, train_baseline  # noqa: E402
from baselines_latency import choose_budgets, model_onnx_bytes, probe_latency, time_all  # noqa: E402
from baselines_pareto import judge_budget, plot_pareto, summarize_seeds  # noqa: E402

from hwnas.atomic import atomic_path, atomic_write_json  # noqa: E402
from hwnas.blocks import arch_macs, arch_params, count_macs  # noqa: E402
from hwnas.cli.common import budget_list  # noqa: E402
from hwnas.data import Dataset, batches, load_dataset  # noqa: E402
from hwnas.errors import HwnasError  # noqa: E402
from hwnas.latency.harness import Protocol, whole_model_protocol  # noqa: E402
from hwnas.latency.lut import load_lut  # noqa: E402
from hwnas.latency.predictor import LatencyPredictor, latency_range_ms  # noqa: E402
from hwnas.latency.profiles import load_profile  # noqa: E402
from hwnas.latency.runtime import OrtRunner  # noqa: E402
from hwnas.machine import machine_info  # noqa: E402
from hwnas.search import EvolutionConfig, RandomConfig, evolve, gene_latency_from_lut, random_search  # noqa: E402
from hwnas.search.scorer import ScorerConfig, scorer_for_run  # noqa: E402
from hwnas.space import Arch  # noqa: E402
from hwnas.train.checkpoint import CHECKPOINT, LoadedRun, load_run, read_checkpoint, read_config_json  # noqa: E402
from hwnas.train.evaluate import accuracy, recalibrate_bn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
log = logging.getLogger("bench_baselines")


# ---- setup -------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=REPO / "runs" / "bignas-tiny", help="trained supernet run folder")
    p.add_argument(
        "--lut",
        type=Path,
        default=None,
        help="default: the committed cpu-ort-1t table of RUN's space if it matches this machine, else one "
        "profiled here under --work (as make demo does)",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per model and search (default 2; --quick 1)")
    p.add_argument(
        "--finetune-epochs", type=int, default=None, help="KD fine-tune epochs of winners (default 1; --quick 0)"
    )
    p.add_argument("--finetune-lr", type=float, default=None, help="fine-tune LR (default: hwnas export's)")
    p.add_argument("--kd-weight", type=float, default=None, help="fine-tune KD weight (default: hwnas export's)")
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="baseline training epochs (default: supernet epochs of RUN + --finetune-epochs)",
    )
    p.add_argument("--resolution", type=int, default=32, help="baseline input resolution; must be one of the space's")
    p.add_argument("--min-budgets", type=int, default=3, help="fill up to this many budgets with --fractions")
    p.add_argument(
        "--fractions",
        default="0.05,0.2,0.45",
        help="fill-up budgets as fractions of the LUT's [min, max] range, used in this order",
    )
    p.add_argument(
        "--budgets",
        type=budget_list,
        default=None,
        help="explicit budgets in LUT ms, e.g. 1.3,1.8,2.6 (replaces the rule)",
    )
    p.add_argument("--evaluations", type=int, default=None, help="measured candidates per search (default 48)")
    p.add_argument("--population", type=int, default=12, help="evolution population")
    p.add_argument("--val-images", type=int, default=2000, help="val images per candidate evaluation")
    p.add_argument("--calib-images", type=int, default=512, help="train images for BN recalibration in the search")
    p.add_argument(
        "--timing-passes",
        type=int,
        default=100,
        help="interleaved passes of the final timing of every ONNX file (~10 s for 28 tiny files here)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and search")
    p.add_argument("--work", type=Path, default=Path("/tmp/hwnas-bench-baselines"), help="cache of finished items")
    p.add_argument("--fresh", action="store_true", help="ignore finished items under --work")
    p.add_argument("--quick", action="store_true", help="smoke run: few steps, 1 seed, few evaluations, short timing")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default bench/results/baselines.json; --quick: WORK/quick/baselines.json)",
    )
    p.add_argument(
        "--plot", type=Path, default=None, help="Pareto PNG (default next to the JSON: baselines_pareto.png)"
    )
    args = p.parse_args(argv)
    # a smoke run must never overwrite the committed results
    args.out = args.out or (args.work / "quick" / "baselines.json" if args.quick else RESULTS / "baselines.json")
    args.plot = args.plot or args.out.with_name(args.out.stem + "_pareto.png")
    args.seeds = args.seeds or (1 if args.quick else 2)
    args.finetune_epochs = args.finetune_epochs if args.finetune_epochs is not None else (0 if args.quick else 1)
    args.evaluations = args.evaluations or (4 if args.quick else 48)
    # what the exporter uses by default; --quick shrinks the test set, parity images and BN batches
    args.test_images, args.parity_images, args.recalib_batches = (500, 50, 2) if args.quick else (None, 1000, 20)
    if args.quick:
        args.population = min(args.population, 2)
        args.val_images, args.calib_images = min(args.val_images, 200), min(args.calib_images, 64)
    if not args.evaluations >= 1 or not args.seeds >= 1 or args.finetune_epochs < 0 or args.timing_passes < 2:
        p.error("--evaluations and --seeds must be >= 1, --finetune-epochs >= 0, --timing-passes >= 2")
    return args


def quick_run(work: Path) -> Path:
    """A 5-step BigNAS supernet for smoke runs (reused when already there): the pipeline runs, the numbers mean nothing."""
    from hwnas.train.config import TrainConfig
    from hwnas.train.loop import train

    out = work / "quick-supernet"
    if not (out / CHECKPOINT).is_file():
        out.mkdir(parents=True, exist_ok=True)
        log.info("no trained run given: training a 5-step supernet into %s (smoke run only)", out)
        train(TrainConfig(max_steps=5, checkpoint_every=5, recal_batches=2), out, progress=False)
    return out


def global_batch(run: LoadedRun) -> int:
    """Images per optimizer step of the run: its per-process batch × the DDP world size it recorded in config.json."""
    return run.config.batch_size * int(read_config_json(run.run_dir).get("world_size", 1))


def supernet_epochs(run: LoadedRun, n_train: int) -> float:
    """Epochs the supernet actually trained (its step count × global batch / train images; `max_steps` included)."""
    return run.step * global_batch(run) / n_train


# settings a trained baseline does not depend on: a rerun that changes only these reuses the baselines (~40 min a seed)
SEARCH_SIDE = (
    "lut",
    "evaluations",
    "population",
    "val_images",
    "calib_images",
    "budgets",
    "fractions",
    "min_budgets",
    "finetune_lr",
    "kd_weight",
    "run",
)
# run-config fields only the supernet uses: baselines train with the rest of the run's recipe (`TrainPlan`), and their
# length comes from the epochs the run actually trained, so a retrained supernet with the same recipe reuses them
SUPERNET_ONLY = (
    "space",
    "width",
    "space_hash",
    "epochs",
    "max_steps",
    "num_random",
    "kd_temperature",
    "ofa_phase_fractions",
    "max_resolution_for_max",
    "checkpoint_every",
    "log_every",
    "eval_every_epochs",
    "recal_batches",
    "eval_batch_size",
    "channels_last",
    "amp",
    "threads",
)


def fingerprint(args: argparse.Namespace, run: LoadedRun, epochs: float, *, baselines_only: bool = False) -> str:
    """Identity of everything a cached item depends on: a changed setting or checkpoint never reuses an old result.

    `baselines_only` is the key of trained baselines: it leaves out the search and fine-tune side (`SEARCH_SIDE`, the
    LUT) and the checkpoint itself, and names instead the run's training recipe (its config less `SUPERNET_ONLY`).
    """
    # the final timing is never cached: its settings do not make trained or exported items stale
    skip = ("work", "fresh", "out", "plot", "seeds", "timing_passes") + (SEARCH_SIDE if baselines_only else ())
    keys = {k: str(v) for k, v in vars(args).items() if k not in skip}
    blob: dict[str, Any] = {"args": keys, "epochs": epochs}
    if baselines_only:
        recipe = read_config_json(run.run_dir)
        blob["recipe"] = {k: v for k, v in sorted(recipe.items()) if k not in SUPERNET_ONLY}
    else:
        ckpt = (run.run_dir / CHECKPOINT).stat()
        blob["ckpt"] = [str(run.run_dir.resolve()), ckpt.st_size, ckpt.st_mtime_ns]
        # the resolved fine-tune settings (defaults live in hwnas) and the teacher rule: exports made before a change
        # of either are not reused
        keys["finetune"] = repr(finetune_config(args)) + " teacher=largest@max-res"
        lut = args.lut.stat()
        blob["lut"] = [lut.st_size, lut.st_mtime_ns]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def cached(path: Path, compute: Callable[[], dict[str, Any]], *, fresh: bool) -> dict[str, Any]:
    """The JSON record at `path` if a previous run finished it, else `compute()` written atomically."""
    if not fresh and path.is_file():
        log.info("reusing %s", path)
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    record = compute()
    atomic_write_json(path, record)
    return record


# ---- baselines ---------------------------------------------------------------------------------------------------------


def export_baseline_onnx(model: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    """ONNX exactly as `hwnas export` writes a subnet (same tracing, opset 17, dynamic batch), checked by onnx.checker."""
    from hwnas.export.onnx import check_onnx

    with atomic_path(path, suffix=".onnx") as tmp:
        tmp.write_bytes(model_onnx_bytes(model, shape))
        check_onnx(tmp)
    return path


def train_one_baseline(
    spec: BaselineSpec, seed: int, *, data: Dataset, run: LoadedRun, steps: int, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    from hwnas.export.parity import check_parity

    res, c = args.resolution, data.channels
    plan = TrainPlan(recipe=run.config, steps=steps, resolution=res, seed=seed, batch_size=global_batch(run))
    model = build_baseline(spec, in_channels=c, num_classes=data.num_classes, seed=seed)
    train_s = train_baseline(model, data, plan, desc=f"{spec.name} seed {seed}")
    limit = None if args.test_images is None else math.ceil(args.test_images / 500)
    acc_before = accuracy(model, data.test, resolution=res, batch_size=500, limit=limit)
    gen = torch.Generator().manual_seed(seed)  # BN re-estimated as export_run does for a subnet (same batches/size)
    recalibrate_bn(
        model,
        (
            x
            for x, _ in batches(
                data.train, batch_size=128, resolution=res, shuffle=True, generator=gen, limit=args.recalib_batches
            )
        ),
    )
    acc = accuracy(model, data.test, resolution=res, batch_size=500, limit=limit)
    onnx_path = export_baseline_onnx(model, folder / "model.onnx", (1, c, res, res))
    parity_x = next(batches(data.test, batch_size=args.parity_images, resolution=res))[0]
    parity = check_parity(model, onnx_path, parity_x)
    log.info(
        "%s seed %d: test %.4f (before BN re-estimation %.4f), %.0f s, ONNX max |diff| %.1e",
        spec.name,
        seed,
        acc,
        acc_before,
        train_s,
        parity.max_abs_diff,
    )
    return {
        "name": spec.name,
        "seed": seed,
        "test_acc": acc,
        "test_acc_before_bn_recal": acc_before,
        "train_seconds": round(train_s, 1),
        "steps": steps,
        "onnx": str(onnx_path),
        "params": sum(p.numel() for p in model.parameters()),
        "macs": count_macs(model, (1, c, res, res)),
        "parity_max_abs_diff": parity.max_abs_diff,
        "parity_top1_agreement": parity.top1_agreement,
    }


# ---- hwnas winners -----------------------------------------------------------------------------------------------------


def search_one(
    strategy: str,
    *,
    run: LoadedRun,
    scorer: Any,
    latency: Any,
    budget_ms: float,
    seed: int,
    b_idx: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One search on the val split (evolution or random, same measured-evaluation count)."""
    rng = np.random.default_rng([seed, b_idx, 0 if strategy == "random" else 1])
    if strategy == "random":
        res = random_search(
            run.space, scorer, latency, budget_ms=budget_ms, cfg=RandomConfig(evaluations=args.evaluations), rng=rng
        )
    else:
        cfg = EvolutionConfig(
            population=args.population, generations=10_000, max_evaluations=args.evaluations, progress=True
        )
        res = evolve(run.space, scorer, latency, budget_ms=budget_ms, cfg=cfg, rng=rng)
    return {
        "arch": str(res.arch),
        "predicted_ms": round(res.predicted_ms, 5),
        "val_acc": res.accuracy,
        "evaluated": res.evaluated,
        "search_seconds": round(res.seconds, 1),
    }


def export_winner(arch: Arch, seed: int, *, run: LoadedRun, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The exporter's pipeline for one winner (fine-tune seeded by `seed`), without its timing: that comes interleaved."""
    from hwnas.export.pipeline import ExportConfig, export_run

    cfg = ExportConfig(
        finetune=finetune_config(args),
        lut=args.lut,
        seed=seed,
        measure=False,
        test_images=args.test_images,
        parity_images=args.parity_images,
        recalib_batches=args.recalib_batches,
    )
    started = time.perf_counter()
    result = export_run(run.run_dir, arch, folder, cfg=cfg, progress=True)
    return {
        "test_acc": result.test_acc,
        "onnx": str(result.onnx),
        "params": arch_params(run.space, arch),
        "macs": arch_macs(run.space, arch),
        "export_seconds": round(time.perf_counter() - started, 1),
        "parity_max_abs_diff": result.parity.max_abs_diff,
    }


def finetune_config(args: argparse.Namespace) -> Any:
    """The exporter's fine-tune settings, with --finetune-lr / --kd-weight where given."""
    from hwnas.export.finetune import FinetuneConfig

    given = {"lr": args.finetune_lr, "kd_weight": args.kd_weight}
    return FinetuneConfig(epochs=args.finetune_epochs, **{k: v for k, v in given.items() if v is not None})


# ---- the benchmark -----------------------------------------------------------------------------------------------------

QUICK_TIMING = Protocol(warmup_s=0.5, warmup=1, rounds=2, repeats=3, max_cv=1.0, remeasure=0)


def winner_side(strategy: str, winners: list[dict[str, Any]]) -> dict[str, Any]:
    acc = summarize_seeds([w["test_acc"] for w in winners])
    return {
        "strategy": strategy,
        "winners": winners,
        "measured_ms": max(w["measured_ms"] for w in winners),
        "test_acc_mean": acc["mean"],
        "test_acc_std": acc["std"],
        "val_acc_mean": summarize_seeds([w["val_acc"] for w in winners])["mean"],
    }


def baseline_row(
    spec: BaselineSpec, recs: list[dict[str, Any]], ms: list[float], cvs: list[float], *, resolution: int, epochs: float
) -> dict[str, Any]:
    acc = summarize_seeds([r["test_acc"] for r in recs])
    return {
        "name": spec.name,
        "family": spec.family,
        "width": spec.width,
        "resolution": resolution,
        "params": recs[0]["params"],
        "macs": recs[0]["macs"],
        "measured_ms": round(float(np.median(ms)), 5),
        "measured_ms_per_seed": [round(m, 5) for m in ms],
        "measured_cv_per_seed": [round(c, 4) for c in cvs],
        "test_acc_mean": acc["mean"],
        "test_acc_std": acc["std"],
        "test_acc_per_seed": {str(r["seed"]): r["test_acc"] for r in recs},
        "test_acc_before_bn_recal_per_seed": {str(r["seed"]): r["test_acc_before_bn_recal"] for r in recs},
        "train_seconds_per_seed": {str(r["seed"]): r["train_seconds"] for r in recs},
        "train_seconds_mean": round(float(np.mean([r["train_seconds"] for r in recs])), 1),
        "steps": recs[0]["steps"],
        "epochs": round(epochs, 4),
        "parity_max_abs_diff": max(r["parity_max_abs_diff"] for r in recs),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    if args.quick and not (args.run / CHECKPOINT).is_file():
        args.run = quick_run(args.work)
    run = load_run(args.run)
    space = run.space
    if args.resolution not in space.resolutions:
        raise HwnasError(f"--resolution {args.resolution} is not one of space {space.name}'s {list(space.resolutions)}")
    data = load_dataset(run.dataset, run.data_dir, val_size=run.config.val_size, seed=run.config.seed)
    if args.lut is None:  # a table from another CPU would put the budgets and the winners' latencies off by 2-4x
        from hwnas.quickstart import ensure_lut

        args.lut, _ = ensure_lut(
            space,
            load_profile("cpu-ort-1t"),
            committed_dir=REPO / "latency_tables",
            out_dir=args.work / "tables",
            progress=False,
            reuse_profiled=True,
        )
    table = load_lut(args.lut, space=space)
    profile = load_profile(table.device)
    sn_epochs = supernet_epochs(run, len(data.train))
    if not run.finished:
        log.warning(
            "run %s stopped at step %d of %d: baselines get its %.3f epochs trained so far",
            run.run_dir,
            run.step,
            run.total_steps,
            sn_epochs,
        )
    epochs = args.epochs if args.epochs is not None else sn_epochs + args.finetune_epochs
    batch = global_batch(run)
    steps = max(1, round(epochs * len(data.train) / batch))
    steps = min(steps, 5) if args.quick else steps
    work = args.work / fingerprint(args, run, epochs)
    baselines_dir = args.work / f"baselines-{fingerprint(args, run, epochs, baselines_only=True)}"
    log.info(
        "supernet %s: %.3f epochs (%d steps); baselines: %d steps = %.3f epochs at %d px; work dir %s (baselines: %s)",
        run.run_dir,
        sn_epochs,
        run.step,
        steps,
        steps * batch / len(data.train),
        args.resolution,
        work,
        baselines_dir,
    )
    # whole models, like validate times them: few runs per pass, many passes (the profile's 5 block passes moved the
    # baselines 4-20% between two runs minutes apart, enough to reorder models 5% apart)
    timing = QUICK_TIMING if args.quick else whole_model_protocol(profile, warmup_s=2.0, passes=args.timing_passes)

    log.info("[1/5] latency probe: untrained baselines + hwnas probe subnets on %s", profile.name)
    probe = cached(
        work / "probe.json",
        lambda: probe_latency(
            space,
            table,
            profile,
            resolution=args.resolution,
            n_random=2 if args.quick else 6,
            protocol=QUICK_TIMING if args.quick else whole_model_protocol(profile, warmup_s=2.0),
        ),
        fresh=args.fresh,
    )
    lo, hi = latency_range_ms(LatencyPredictor(table, space))
    budgets = choose_budgets(lo, hi, args, probe)
    log.info("budgets (LUT ms): %s", ", ".join(f"{b['budget_ms']} ({b['reason']})" for b in budgets))

    base: dict[tuple[str, int], dict[str, Any]] = {}
    for i, spec in enumerate(BASELINES):
        for seed in range(args.seeds):
            log.info("[2/5] baseline %d/%d %s seed %d: %d steps", i + 1, len(BASELINES), spec.name, seed, steps)
            folder = baselines_dir / f"{spec.name}-s{seed}"
            base[spec.name, seed] = cached(
                folder / "record.json",
                lambda: train_one_baseline(spec, seed, data=data, run=run, steps=steps, args=args, folder=folder),
                fresh=args.fresh,
            )

    calib_bs = min(256, args.calib_images)
    scorer = scorer_for_run(
        run,
        cfg=ScorerConfig(
            calib_batches=-(-args.calib_images // calib_bs), calib_batch_size=calib_bs, val_images=args.val_images
        ),
    )
    latency = gene_latency_from_lut(table, space)
    exports: dict[tuple[str, int], dict[str, Any]] = {}
    found: list[dict[str, list[dict[str, Any]]]] = []
    for b_idx, b in enumerate(budgets):
        per: dict[str, list[dict[str, Any]]] = {"hwnas": [], "random": []}
        for seed in range(args.seeds):
            for key, strategy in (("hwnas", "evolution"), ("random", "random")):
                log.info(
                    "[3/5] budget %d/%d (%.4f ms) seed %d: %s search, %d evaluations",
                    b_idx + 1,
                    len(budgets),
                    b["budget_ms"],
                    seed,
                    strategy,
                    args.evaluations,
                )
                s = cached(
                    work / "search" / f"b{b['budget_ms']:.4f}-s{seed}-{strategy}.json",
                    lambda: search_one(
                        strategy,
                        run=run,
                        scorer=scorer,
                        latency=latency,
                        budget_ms=b["budget_ms"],
                        seed=seed,
                        b_idx=b_idx,
                        args=args,
                    ),
                    fresh=args.fresh,
                )
                if (s["arch"], seed) not in exports:
                    log.info("[4/5] export + %d-epoch fine-tune of %s (seed %d)", args.finetune_epochs, s["arch"], seed)
                    folder = work / "winners" / f"{hashlib.sha256(s['arch'].encode()).hexdigest()[:10]}-s{seed}"
                    exports[s["arch"], seed] = cached(
                        folder / "record.json",
                        lambda: export_winner(Arch.parse(s["arch"]), seed, run=run, args=args, folder=folder),
                        fresh=args.fresh,
                    )
                per[key].append({"seed": seed, "strategy": strategy, **s, **exports[s["arch"], seed]})
        found.append(per)

    runner = OrtRunner(profile)
    files = {f"{name}/s{seed}": (r["onnx"], args.resolution) for (name, seed), r in base.items()}
    files.update({f"{arch}/s{seed}": (r["onnx"], Arch.parse(arch).resolution) for (arch, seed), r in exports.items()})
    log.info("[5/5] timing %d ONNX files interleaved on %s (%d passes)", len(files), profile.name, timing.rounds)
    stats = time_all(
        {
            k: runner.load_onnx(Path(p).read_bytes(), (profile.batch, space.in_channels, r, r))
            for k, (p, r) in files.items()
        },
        profile,
        timing,
        desc="latency (all models)",
    )

    models = [
        baseline_row(
            spec,
            [base[spec.name, s] for s in range(args.seeds)],
            [stats[f"{spec.name}/s{s}"].p50_ms for s in range(args.seeds)],
            [stats[f"{spec.name}/s{s}"].cv for s in range(args.seeds)],
            resolution=args.resolution,
            epochs=steps * batch / len(data.train),
        )
        for spec in BASELINES
    ]
    rows = []
    for b, per in zip(budgets, found):
        for w in per["hwnas"] + per["random"]:
            st = stats[f"{w['arch']}/s{w['seed']}"]
            w.update(
                measured_ms=round(st.p50_ms, 5),
                measured_cv=round(st.cv, 4),
                fits_budget_predicted=w["predicted_ms"] <= b["budget_ms"] + 1e-9,
            )
        rows.append(
            {**b, "hwnas": winner_side("evolution", per["hwnas"]), "random": winner_side("random", per["random"])}
        )
    tv_points = [{k: m[k] for k in ("name", "measured_ms", "test_acc_mean", "test_acc_std")} for m in models]
    rnd_points = [
        {
            "name": f"random@{r['budget_ms']}",
            **{k: r["random"][k] for k in ("measured_ms", "test_acc_mean", "test_acc_std")},
        }
        for r in rows
    ]
    measured = {m["name"]: m["measured_ms"] for m in models}
    for r in rows:
        r["comparison"] = judge_budget(r["hwnas"], tv_points + rnd_points)
        r["comparison_torchvision_only"] = judge_budget(r["hwnas"], tv_points)
        # the stricter view: everything the matched baseline's latency would have bought counts
        up_to = max((measured[name] for name in r["matched"]), default=None)
        r["comparison_at_budget"] = (
            None
            if up_to is None
            else {"up_to_ms": up_to, **judge_budget(r["hwnas"], tv_points + rnd_points, up_to_ms=up_to)}
        )
        r["evolution_beats_random_same_budget"] = r["hwnas"]["test_acc_mean"] > r["random"]["test_acc_mean"]
    payload = {
        "benchmark": "baselines",
        "issue": "#9 benchmark 4: result quality on Fashion-MNIST",
        "quick": args.quick,
        "machine": machine_info(),
        "seeds": list(range(args.seeds)),
        "setup": {
            "run": str(run.run_dir),
            "run_mode": run.config.mode,
            "space": space.name,
            "dataset": run.dataset,
            "lut": str(args.lut),
            "lut_device": table.device,
            "lut_cpu": table.meta.get("cpu"),
            "supernet_epochs": round(sn_epochs, 4),
            "supernet_steps": run.step,
            "supernet_finished": run.finished,
            "supernet_train_seconds": read_checkpoint(run.run_dir / CHECKPOINT).get("train_s"),
            "finetune_epochs": args.finetune_epochs,
            "finetune_lr": finetune_config(args).lr,
            "finetune_kd_weight": finetune_config(args).kd_weight,
            "finetune_teacher": "largest subnet at the largest resolution, BN re-estimated (kd_teacher)",
            "baseline_epochs": round(steps * batch / len(data.train), 4),
            "baseline_steps": steps,
            "baseline_resolution": args.resolution,
            "bn_recal_batches": args.recalib_batches,
            "augment": run_augment(run.config),
            "torch_threads": args.threads,
            "evaluations_per_search": args.evaluations,
            "evolution_population": args.population,
            "val_images": args.val_images,
            "calib_images": args.calib_images,
            "test_images": args.test_images or len(data.test),
            "lut_range_ms": [round(lo, 5), round(hi, 5)],
        },
        "protocol": PROTOCOL_NOTES
        | {
            "timing": {
                "profile": profile.name,
                "rounds": timing.rounds,
                "repeats": timing.repeats,
                "warmup_s": timing.warmup_s,
                "clock": profile.clock,
                "items_interleaved": len(files),
            }
        },
        "latency_probe": probe,
        "models": models,
        "budgets": rows,
        "pareto_wins": sum(1 for r in rows if r["comparison"]["beats_all"] is True),
        "pareto_budgets": len(rows),
        "pareto_no_baseline_as_fast": sum(1 for r in rows if r["comparison"]["beats_all"] is None),
        "pareto_wins_vs_torchvision_only": sum(
            1 for r in rows if r["comparison_torchvision_only"]["beats_all"] is True
        ),
        "pareto_wins_at_budget": sum(1 for r in rows if (r["comparison_at_budget"] or {}).get("beats_all") is True),
        "pareto_budgets_matched": sum(1 for r in rows if r["matched"]),
        "evolution_beats_random": sum(1 for r in rows if r["evolution_beats_random_same_budget"]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return payload


PROTOCOL_NOTES = {
    "baselines": "torchvision mobilenet_v3_small/large, width 0.5/0.75/1.0, stem conv -> in_channels of the data, stride 1; "
    "trained from scratch on the run's train split with the run's TrainConfig recipe and its mode's "
    "lr_factor schedule, the run's augmentation (setup.augment) and hwnas normalisation, channels_last; then BN "
    "re-estimated on setup.bn_recal_batches x 128 train images (as export_run does for subnets); test "
    "split accuracy",
    "resolution": "32 px by default: one of the space's resolutions, so a baseline sees exactly the preprocessing of an "
    "hwnas subnet at r32 (28 px images, bilinear resize); no smaller than any hwnas winner's input, so "
    "the baselines are not handicapped; the torchvision nets' four remaining stride-2 stages halve it "
    "cleanly (32->16->8->4->2); MEASURED.md's earlier baseline numbers are at 32 px too",
    "epochs": "baseline epochs = supernet epochs actually trained (step x global batch / train images) + fine-tune epochs",
    "winners": "evolution / random search at the same measured-evaluation count on the val split (shared cached "
    "scorer), then hwnas.export.pipeline.export_run: extract, BN recal, KD fine-tune from the supernet's "
    "largest subnet, BN recal, test accuracy, ONNX + parity",
    "latency": "every model's ONNX file (dynamic batch, opset 17, the exporter's tracing) timed at batch 1 in one "
    "interleaved hwnas.latency.harness.run_protocol call with the profile's protocol and clock",
    "pareto": "see bench/baselines_pareto.py: hwnas point = slowest seed's measured ms, mean test acc; wins when its "
    "mean beats every torchvision model and random-search winner point measured at <= that latency; "
    "comparison_at_budget (budgets matched to a baseline): the same against every point measured at <= "
    "max(that latency, the matched baseline's measured latency)",
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)
    torch.set_num_threads(args.threads)
    try:
        payload = run_benchmark(args)
    except HwnasError as exc:
        log.error("bench_baselines: error: %s", exc)
        return 2
    atomic_write_json(args.out, payload)
    plot_pareto(
        args.plot,
        baselines=payload["models"],
        budgets=payload["budgets"],
        title=f"{payload['setup']['space']} on {payload['setup']['dataset']}: test accuracy vs measured latency, "
        f"{args.seeds} seed(s), {payload['setup']['baseline_epochs']:g} training epochs"
        + ("\nQUICK smoke run: meaningless numbers" if args.quick else ""),
    )
    for r in payload["budgets"]:
        c = r["comparison"]
        log.info(
            "budget %.4f ms: hwnas %.4f±%.4f @ %.3f ms, random %.4f @ %.3f ms; best baseline at <= its latency: "
            "%s -> %s",
            r["budget_ms"],
            r["hwnas"]["test_acc_mean"],
            r["hwnas"]["test_acc_std"],
            r["hwnas"]["measured_ms"],
            r["random"]["test_acc_mean"],
            r["random"]["measured_ms"],
            c["best_eligible"],
            {True: "hwnas wins", False: "hwnas loses", None: "nothing as fast"}[c["beats_all"]],
        )
    log.info(
        "pareto_wins %d / %d (at the matched baseline's latency: %d / %d); wrote %s and %s",
        payload["pareto_wins"],
        payload["pareto_budgets"],
        payload["pareto_wins_at_budget"],
        payload["pareto_budgets_matched"],
        args.out,
        args.plot,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
