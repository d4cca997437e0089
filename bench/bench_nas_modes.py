"""Latency-aware search inside supernet training, measured: mbv3-tiny / Fashion-MNIST / cpu-ort-1t LUT.

1. FBNet search at targets T1 and T2 from the same warmed-up weights. For each: the derived arch's predicted and
   *measured* latency, and its test accuracy after a short fine-tune next to a random arch of similar predicted latency
   (same supernet weights, same fine-tune).
2. A λ sweep (proxyless mode, CE + λ·E[LAT]/T, fixed λ) from the same warmed-up weights: per λ the expected latency
   and, for the argmax arch (what α says) and the near-target decode, predicted and measured latency, and the argmax
   arch's accuracy three ways: BN-recalibrated in the run's weights, in the warm-start weights every λ began from
   (only the arch differs between rows), and after the targets' fine-tune from those weights. `sweep_monotonic` says
   which of them move one way as λ grows; `accuracy_standard_error` is what a difference has to exceed to mean
   anything.

Every arch is timed whole in one session, interleaved with the LUT's drift reference subnets (validate's protocol), so
the report carries measured vs target both as measured and × the machine's speed factor relative to the LUT's build.
Run under `flock /tmp/hwnas-heavy.lock`; writes bench/results/nas_modes.json. Short by design (CPU is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from results_paths import repo_relative

from hwnas.atomic import atomic_write_json
from hwnas.data import batches, epoch_order, load_dataset, make_batch
from hwnas.latency import LatencyPredictor, latency_range_ms, load_lut, load_profile
from hwnas.machine import machine_info
from hwnas.space import Arch, sample
from hwnas.supernet import extract
from hwnas.train.evaluate import accuracy, recalibrate_bn
from hwnas.train.nas_config import NasConfig
from hwnas.train.nas_loop import load_nas_checkpoint, train_nas

ROOT = Path(__file__).resolve().parents[1]
EVAL_BATCHES = [10]
log = logging.getLogger("bench_nas_modes")


def _supernet_of(run: Path, space):  # noqa: ANN001, ANN202
    """The supernet weights of a search run, or of a plain supernet run (the warm start) when it has no α."""
    from hwnas.supernet import Supernet
    from hwnas.train.checkpoint import read_checkpoint

    net = Supernet(space)
    net.load_state_dict(read_checkpoint(run / "checkpoint.pt")["model"])
    return net.eval()


def derive(run: Path, space, table, cfg: NasConfig) -> dict:  # noqa: ANN001
    """Both decodes of the trained α: per-layer argmax and the most probable arch near the target."""
    from hwnas.train.arch_params import ArchParams, decode_indices
    from hwnas.train.expected_latency import arch_latency_ms, decode_near_target, expected_latency_ms, latency_arrays

    params = ArchParams(space, resolution=cfg.resolution or 28)
    with torch.no_grad():
        params.logits.copy_(load_nas_checkpoint(run / "checkpoint.pt")["nas"]["alpha"])
    arrays = latency_arrays(table, space, params)
    near = decode_indices(
        params,
        decode_near_target(
            params, arrays, cfg.target_ms, generator=torch.Generator().manual_seed(cfg.seed + cfg.epochs - 1)
        ),
    )
    argmax = params.arch()
    return {
        "arch": str(near),
        "predicted_ms": arch_latency_ms(params, arrays, near),
        "expected_ms": float(expected_latency_ms(params.probs(torch.float64).detach(), arrays)),
        "argmax_arch": str(argmax),
        "argmax_predicted_ms": arch_latency_ms(params, arrays, argmax),
    }


def finetune_acc(supernet, space, data, arch: Arch, *, steps: int, seed: int) -> float:  # noqa: ANN001
    """Extract `arch`, recalibrate BN, `steps` SGD steps (batch 64, cosine) on train, then test accuracy."""
    model = extract(supernet, arch)
    gen = torch.Generator().manual_seed(seed)
    recalibrate_bn(
        model,
        (
            x
            for x, _ in batches(
                data.train, batch_size=128, shuffle=True, generator=gen, limit=10, resolution=arch.resolution
            )
        ),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=3e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order = epoch_order(len(data.train), seed=seed, epoch=99)
    model.train()
    for step in range(steps):
        x, y = make_batch(
            data.train, order[step * 64 : (step + 1) * 64], resolution=arch.resolution, augment=True, generator=gen
        )
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return accuracy(model.eval(), data.test, resolution=arch.resolution, batch_size=500, limit=EVAL_BATCHES[0])


def supernet_val_acc(run: Path, space, data, arch: Arch, *, val_batches: int) -> float:  # noqa: ANN001
    """`arch` inside the run's supernet (fresh copy, BN recalibrated on 5 train batches), on `val_batches` × 500 val
    images."""
    supernet = _supernet_of(run, space)
    gen = torch.Generator().manual_seed(0)
    recalibrate_bn(
        supernet, (x for x, _ in batches(data.train, batch_size=250, shuffle=True, generator=gen, limit=5)), arch=arch
    )
    return accuracy(supernet, data.val, resolution=arch.resolution, batch_size=500, arch=arch, limit=val_batches)


def monotonic(values: list[float]) -> bool:
    """Never rising from one λ to the next (ties allowed: two λ can pick the same arch)."""
    return all(b <= a for a, b in zip(values, values[1:]))


SWEEP_KEYS = (
    "expected_ms",
    "argmax_predicted_ms",
    "argmax_measured_ms",
    "argmax_supernet_val_acc",
    "argmax_warm_val_acc",
    "argmax_finetune_test_acc",
)


def sweep_means(sweep: list[dict]) -> list[dict]:
    """One row per λ, in increasing λ: every `SWEEP_KEYS` quantity averaged over that λ's seeds."""
    lambdas = sorted({r["lambda"] for r in sweep})
    means = []
    for lam in lambdas:
        rows = [r for r in sweep if r["lambda"] == lam]
        means.append(
            {"lambda": lam, "seeds": len(rows), **{k: sum(r[k] for r in rows) / len(rows) for k in SWEEP_KEYS}}
        )
    return means


def monotonic_within(values: list[float], tolerance: float) -> bool:
    """Never rising from one λ to the next by more than `tolerance` (what noise alone can put between two values)."""
    return all(b <= a + tolerance for a, b in zip(values, values[1:]))


def sweep_trends(sweep: list[dict], *, eval_images: int) -> dict:
    """In increasing λ, on the per-λ means over seeds (`sweep_means`): does each quantity move one way
    (`sweep_monotonic`), how consistently (`sweep_kendall_tau`, τ against λ: −1 = always falling), and what an accuracy
    difference must exceed to mean anything: `accuracy_standard_error` (binomial on `eval_images`, one seed) and, for
    the means of `seeds` seeds, `sweep_monotonic_within_noise` — no accuracy rise between neighbouring λ larger than two
    standard errors of a difference of two such means (2·√2·SE/√seeds)."""
    from hwnas.latency.validate import kendall_tau

    rows = sweep_means(sweep)
    lambdas = [r["lambda"] for r in rows]
    p_mid = sum(r["argmax_warm_val_acc"] for r in rows) / len(rows)
    se = (p_mid * (1 - p_mid) / eval_images) ** 0.5
    seeds = min(r["seeds"] for r in rows)
    tolerance = 2 * 2**0.5 * se / seeds**0.5
    acc_keys = [k for k in SWEEP_KEYS if k.endswith("_acc")]
    return {
        "sweep_means": rows,
        "sweep_monotonic": {k: monotonic([r[k] for r in rows]) for k in SWEEP_KEYS},
        "sweep_kendall_tau": {k: kendall_tau(lambdas, [r[k] for r in rows]) for k in SWEEP_KEYS},
        "accuracy_standard_error": se,
        "sweep_monotonic_within_noise": {
            "tolerance": tolerance,
            **{k: monotonic_within([r[k] for r in rows], tolerance) for k in acc_keys},
        },
        "accuracy_drop_first_to_last": {k: rows[0][k] - rows[-1][k] for k in acc_keys},
    }


def similar_random_arch(
    predictor: LatencyPredictor,
    space,
    target_ms: float,
    *,
    resolution: int,  # noqa: ANN001
    seed: int,
) -> Arch:
    rng = random.Random(seed)
    archs = [sample(space, rng, resolution=resolution) for _ in range(3000)]
    lat = predictor.predict_many(archs)
    best = int(abs(lat - target_ms).argmin())
    return archs[best]


def measure_all(
    space,
    table,
    archs: list[Arch],
    profile,
    *,  # noqa: ANN001
    passes: int | None,
) -> tuple[dict[Arch, float], float]:
    """p50 ms of every arch, all timed interleaved in one session with the LUT's drift reference subnets (validate's
    protocol), and the machine's speed factor relative to the LUT's build (> 1: slower now)."""
    from hwnas.latency.drift import reference_archs, speed_factor
    from hwnas.latency.runtime import make_runner
    from hwnas.latency.validate import measure_archs

    refs = reference_archs(table, resolutions=sorted({a.resolution for a in archs}), n=6)
    measured = measure_archs(
        space,
        archs,
        profile,
        runner=make_runner(profile),
        chunk=len(archs),
        references=[r.arch for r in refs],
        passes=passes,
    )
    speed = speed_factor(refs, {a: st.p50_ms for a, st in measured.reference_timings[0].items()})
    return {a: st.p50_ms for a, st in measured.timings.items()}, speed


@contextlib.contextmanager
def heavy_lock(wait_s: float) -> Iterator[bool]:
    """Hold /tmp/hwnas-heavy.lock for the timing part if it frees up within `wait_s` (the profile's thread clock
    keeps timings fair even when it does not)."""
    with open("/tmp/hwnas-heavy.lock", "a") as fh:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(2)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--lut",
        type=Path,
        default=None,
        help="default: the committed cpu-ort-1t mbv3-tiny table if it matches this machine, else one "
        "profiled here into bench/results/tables/nas_modes/, kept with the results",
    )
    ap.add_argument(
        "--targets",
        type=float,
        nargs=2,
        default=None,
        help="the two target ms (default: --target-fractions of the LUT's fastest-to-slowest range)",
    )
    ap.add_argument("--target-fractions", type=float, nargs=2, default=(0.1, 0.4))
    ap.add_argument("--lambdas", type=float, nargs="+", default=(0.0, 1.0, 4.0))
    ap.add_argument("--steps", type=int, default=25, help="weight steps per epoch")
    ap.add_argument("--finetune-steps", type=int, default=60)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/nas_modes.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hwnas-bench-nas"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sweep-epochs", type=int, default=1)
    ap.add_argument("--lock-wait-s", type=float, default=300)
    ap.add_argument("--eval-batches", type=int, default=4, help="val/test batches of 500 images for accuracies")
    ap.add_argument("--sweep-steps", type=int, default=None, help="weight steps per sweep epoch (default --steps)")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument(
        "--sweep-seeds", type=int, default=1, help="α-training seeds per λ; the trends are computed on the per-λ means"
    )
    ap.add_argument(
        "--sweep-target",
        type=float,
        default=None,
        help="T of the sweep's CE + λ·E[LAT]/T (default: the mean of --targets)",
    )
    ap.add_argument("--warm", type=Path, default=None, help="warmed-up run to start every search from")
    ap.add_argument("--target-loss", default="bisided", help="latency loss of the target runs")
    ap.add_argument(
        "--passes",
        type=int,
        default=None,
        help="interleaved timing passes per arch (default: validate's, 3 x the profile's rounds)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    EVAL_BATCHES[0] = args.eval_batches
    if args.lut is None:
        from hwnas.quickstart import ensure_lut
        from hwnas.space import get_space

        args.lut, _ = ensure_lut(
            get_space("mbv3-tiny"),
            load_profile("cpu-ort-1t"),
            committed_dir=ROOT / "latency_tables",
            out_dir=ROOT / "bench/results/tables/nas_modes",
            progress=False,
        )
    table = load_lut(args.lut)
    space = table.space()
    profile = load_profile(table.device)
    predictor = LatencyPredictor(table, space)
    if args.targets is None:  # tables differ 2-4x between CPUs: place the targets inside this table's range
        lo, hi = latency_range_ms(predictor)
        args.targets = tuple(round(lo + f * (hi - lo), 3) for f in args.target_fractions)
    data = load_dataset("fashion-mnist", val_size=5000, seed=0)
    results: dict = {
        "lut": repo_relative(args.lut),
        "device": table.device,
        "lut_cpu": table.meta.get("cpu"),
        "machine": machine_info(),
        "target_ms": list(args.targets),
        "targets": [],
        "sweep": [],
    }
    base = dict(batch_size=args.batch_size, steps_per_epoch=args.steps, alpha_lr=0.05, resolution=28)
    t0 = time.perf_counter()
    warm = args.warm if args.warm is not None else args.work / "warmup"
    if args.warm is None:  # one weight warm-up shared by every search below
        cfg = NasConfig(mode="fbnet", target_ms=args.targets[0], epochs=3, warmup_epochs=1, adapt_rate=0.1, **base)
        train_nas(space, data, table, cfg, out_dir=warm, progress=False)
    for i, target in enumerate(args.targets):
        run = args.work / f"fbnet-t{i + 1}"
        cfg = NasConfig(
            mode="fbnet", target_ms=target, epochs=2, warmup_epochs=0, latency_loss=args.target_loss, **base
        )
        if not (run / "arch.json").is_file():
            train_nas(space, data, table, cfg, out_dir=run, progress=False, init_from=warm)
        res = derive(run, space, table, cfg)
        arch = Arch.parse(res["arch"])
        supernet = _supernet_of(run, space)
        rnd = similar_random_arch(predictor, space, res["predicted_ms"], resolution=arch.resolution, seed=i)
        row = {
            "mode": "fbnet",
            "loss": args.target_loss,
            "target_ms": target,
            **res,
            "finetune_test_acc": finetune_acc(supernet, space, data, arch, steps=args.finetune_steps, seed=1),
            "random_arch": str(rnd),
            "random_predicted_ms": predictor.predict(rnd),
            "random_finetune_test_acc": finetune_acc(supernet, space, data, rnd, steps=args.finetune_steps, seed=1),
        }
        log.info("target %s: %s", target, row)
        results["targets"].append(row)
        atomic_write_json(args.out, results)
    if not args.skip_sweep:
        sweep_target = args.sweep_target or sum(args.targets) / len(args.targets)
        results["sweep_target_ms"] = sweep_target
        warm_supernet = _supernet_of(warm, space)  # extract() copies weights: every fine-tune starts from these
        for lam in args.lambdas:
            for seed in range(args.sweep_seeds):
                run = args.work / f"proxyless-lam{lam:g}-s{seed}"
                cfg = NasConfig(
                    mode="proxyless",
                    target_ms=sweep_target,
                    epochs=args.sweep_epochs,
                    warmup_epochs=0,
                    latency_loss="linear",
                    latency_weight=lam,
                    adapt_rate=0.0,
                    seed=seed,
                    **{**base, "steps_per_epoch": args.sweep_steps or args.steps},
                )
                train_nas(space, data, table, cfg, out_dir=run, progress=False, init_from=warm)
                res = derive(run, space, table, cfg)
                argmax = Arch.parse(res["argmax_arch"])
                row = {
                    "mode": "proxyless",
                    "lambda": lam,
                    "seed": seed,
                    **res,
                    "supernet_val_acc": supernet_val_acc(
                        run, space, data, Arch.parse(res["arch"]), val_batches=args.eval_batches
                    ),
                    "argmax_supernet_val_acc": supernet_val_acc(
                        run, space, data, argmax, val_batches=args.eval_batches
                    ),
                    # the same arch in the warm-start weights every λ began from: only the arch differs between rows
                    "argmax_warm_val_acc": supernet_val_acc(warm, space, data, argmax, val_batches=args.eval_batches),
                    # ... and after the targets' short fine-tune from those weights
                    "argmax_finetune_test_acc": finetune_acc(
                        warm_supernet, space, data, argmax, steps=args.finetune_steps, seed=1
                    ),
                }
                log.info("lambda %s seed %d: %s", lam, seed, row)
                results["sweep"].append(row)
                atomic_write_json(args.out, results)
    with heavy_lock(args.lock_wait_s) as locked:
        results["measured_under_lock"] = locked
        archs = sorted(
            {Arch.parse(row[k]) for row in results["targets"] for k in ("arch", "random_arch")}
            | {Arch.parse(row[k]) for row in results["sweep"] for k in ("arch", "argmax_arch")},
            key=str,
        )
        ms, speed = measure_all(space, table, archs, profile, passes=args.passes)
        # The LUT predicts the machine as it ran at build time; x speed is that target on the machine as it runs now.
        results["machine_speed_factor"] = speed
        for row in results["targets"]:
            row["measured_ms"] = ms[Arch.parse(row["arch"])]
            row["random_measured_ms"] = ms[Arch.parse(row["random_arch"])]
            row["measured_vs_target"] = row["measured_ms"] / row["target_ms"] - 1
            row["measured_vs_target_x_speed"] = row["measured_ms"] / (row["target_ms"] * speed) - 1
            row["measured_vs_predicted_x_speed"] = row["measured_ms"] / (row["predicted_ms"] * speed) - 1
        for row in results["sweep"]:
            row["measured_ms"] = ms[Arch.parse(row["arch"])]
            row["argmax_measured_ms"] = ms[Arch.parse(row["argmax_arch"])]
    if results["sweep"]:
        results.update(sweep_trends(results["sweep"], eval_images=500 * args.eval_batches))
    results["total_s"] = time.perf_counter() - t0
    atomic_write_json(args.out, results)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
