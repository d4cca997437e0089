"""`hwnas latency validate`: does the table predict whole subnets it has never seen?

N held-out random subnets (never the calibration ones) are exported whole and timed with the same robust protocol as the
blocks; predictions are compared with the measurements: share within ±5% / ±10%, MAPE, worst error, Kendall τ — for the
calibrated LUT, for the raw sum of rows, and for the obvious proxy, FLOPs (fvcore MACs) calibrated with the same
subnets and the same per-resolution line. A LUT that cannot beat calibrated FLOPs is not worth its profiling time.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.calibrate import CalibrationPoint, fit_calibration
from hwnas.latency.drift import reference_archs, speed_factor
from hwnas.latency.harness import (
    PassRecord,
    TimingStats,
    pass_speeds,
    run_protocol,
    split_half_p50,
    whole_model_protocol,
)
from hwnas.latency.lut import LatencyTable
from hwnas.latency.predictor import LatencyPredictor
from hwnas.latency.profiles import DeviceProfile, profile_from_dict, profile_timer
from hwnas.latency.runtime import Runner, export_many, export_pool, make_runner
from hwnas.space import Arch, SpaceSpec, sample
from hwnas.stats import kendall_tau

__all__ = [
    "measure_archs",
    "Measured",
    "FidelityReport",
    "DriftCorrected",
    "Fit",
    "kendall_tau",
    "fit_stats",
    "validate_lut",
    "heldout_archs",
    "plot_fidelity",
]

log = logging.getLogger(__name__)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined statistic (fewer than 2 subnets or passes) is written as null."""
    return value if np.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Fit:
    """Agreement of one predictor with the measurements (relative errors as fractions)."""

    within_5pct: float
    within_10pct: float
    mape: float
    max_err: float
    kendall_tau: float


def fit_stats(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> Fit:
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    err = np.abs(p / m - 1.0)
    return Fit(
        float(np.mean(err <= 0.05)),
        float(np.mean(err <= 0.10)),
        float(np.mean(err)),
        float(np.max(err)),
        kendall_tau(p, m),
    )


def _fit_summary(lut: Fit, raw: Fit, flops: Fit, retest_kendall_tau: float) -> dict[str, Any]:
    """The fidelity figures both reports print: the calibrated LUT's, the raw sum's and FLOPs' headline numbers."""
    return {
        "within_5pct": lut.within_5pct,
        "within_10pct": lut.within_10pct,
        "mape": lut.mape,
        "max_err": lut.max_err,
        "kendall_tau": lut.kendall_tau,
        "raw_within_10pct": raw.within_10pct,
        "flops_kendall_tau": flops.kendall_tau,
        "flops_mape": flops.mape,
        "retest_kendall_tau": _finite_or_none(retest_kendall_tau),
    }


@dataclass(frozen=True, slots=True)
class DriftCorrected:
    """The same comparisons with every prediction × the machine speed factor of the chunk its subnet was timed in."""

    lut: Fit
    raw: Fit
    flops: Fit
    speed_factors: tuple[float, ...]  # one per chunk: median(reference now / reference at build time)
    references: tuple[str, ...]  # the calibration subnets re-timed in every chunk
    retest_kendall_tau: float = float("nan")  # even vs odd passes, each divided by its chunk's speed factor

    def summary(self) -> dict[str, Any]:
        return {
            **_fit_summary(self.lut, self.raw, self.flops, self.retest_kendall_tau),
            "speed_factors": [round(s, 4) for s in self.speed_factors],
            "references": len(self.references),
        }


@dataclass(frozen=True, slots=True)
class FidelityReport:
    lut: Fit
    raw: Fit
    flops: Fit
    subnets: int
    seconds: float
    records: tuple[dict[str, Any], ...] = field(default=())
    drift_corrected: DriftCorrected | None = None
    retest_kendall_tau: float = float("nan")

    def summary(self) -> dict[str, Any]:
        """The `--json` payload of `hwnas latency validate` (shares and errors as fractions 0–1).

        `speed_factor` is the median machine speed relative to the table's build (> 1: slower now), `drift_corrected`
        the same numbers with predictions scaled by it per chunk; both null without reference subnets.
        `retest_kendall_tau` ranks the subnets by their even passes against their odd passes: how repeatable the
        measurement is. A LUT τ near it is as good as this ground truth can show; far below it, the table is the limit.
        """
        dc = self.drift_corrected
        return {
            "subnets": self.subnets,
            **_fit_summary(self.lut, self.raw, self.flops, self.retest_kendall_tau),
            "seconds": self.seconds,
            "speed_factor": None if dc is None else round(float(np.median(dc.speed_factors)), 4),
            "drift_corrected": None if dc is None else dc.summary(),
        }


def heldout_archs(space: SpaceSpec, n: int, *, resolutions: Sequence[int], exclude: set[str], seed: int) -> list[Arch]:
    """`n` distinct random subnets, round-robin over `resolutions`, none of them in `exclude` (calibration subnets)."""
    rng = random.Random(seed)
    seen = set(exclude)
    out: list[Arch] = []
    for i in range(n):
        res = resolutions[i % len(resolutions)]
        for _ in range(1000):
            arch = sample(space, rng, resolution=res)
            if str(arch) not in seen:
                break
        else:
            raise HwnasError(f"could not draw {n} distinct held-out subnets at {res}; ask for fewer with --subnets")
        seen.add(str(arch))
        out.append(arch)
    return out


@dataclass(frozen=True, slots=True)
class Measured:
    """Whole-subnet timings, the chunk each subnet was timed in, the reference subnets' timings per chunk, and per subnet
    the p50 of its even and of its odd passes (`split_half_p50`)."""

    timings: dict[Arch, TimingStats]
    chunk_of: dict[Arch, int]
    reference_timings: tuple[dict[Arch, TimingStats], ...]
    halves: dict[Arch, tuple[float, float]] = field(default_factory=dict)


def measure_archs(
    space: SpaceSpec,
    archs: Sequence[Arch],
    profile: DeviceProfile,
    *,
    runner: Runner,
    chunk: int = 40,
    progress: bool = False,
    export_workers: int = 2,
    references: Sequence[Arch] = (),
    passes: int | None = None,
) -> Measured:
    """Whole-subnet timings, interleaved within chunks of `chunk` models (bounded memory: one session per model).

    `references` (drift reference subnets, see `hwnas.latency.drift`) are loaded once and timed in every chunk,
    interleaved with that chunk's subnets, so each chunk has its own measure of how fast the machine ran.
    """
    from tqdm import tqdm

    from hwnas.blocks import build_model

    timings: dict[Arch, TimingStats] = {}
    chunk_of: dict[Arch, int] = {}
    halves: dict[Arch, tuple[float, float]] = {}
    ref_timings: list[dict[Arch, TimingStats]] = []
    rng = random.Random(0)
    bar = tqdm(total=len(archs), desc="validate", unit="subnet", disable=not progress, dynamic_ncols=True)
    parallel = hasattr(runner, "load_onnx") and export_workers > 1 and len(archs) >= 20  # workers take seconds to start
    pool = export_pool(export_workers) if parallel else None

    def load_all(part: Sequence[Arch]) -> list[Any]:
        shapes = [(profile.batch, space.in_channels, a.resolution, a.resolution) for a in part]
        if hasattr(runner, "load_onnx"):  # export in parallel worker processes, time afterwards
            datas = export_many(
                [(space, a, shape) for a, shape in zip(part, shapes)], workers=export_workers, pool=pool
            )
            return [runner.load_onnx(data, shape) for data, shape in zip(datas, shapes)]  # type: ignore[attr-defined]
        models = [(build_model(space, a), shape) for a, shape in zip(part, shapes)]
        if hasattr(runner, "prepare"):  # runners that lower slowly: in parallel processes, into their cache
            runner.prepare(models, workers=export_workers)
        return [runner.load(m, shape) for m, shape in models]

    refs = {("ref", a): ld for a, ld in zip(references, load_all(references))} if references else {}
    try:
        for index, start in enumerate(range(0, len(archs), chunk)):
            part = archs[start : start + chunk]
            loaded = {("subnet", a): ld for a, ld in zip(part, load_all(part))}
            try:
                protocol = whole_model_protocol(
                    profile, warmup_s=profile.warmup_s if start == 0 else 1.0, passes=passes
                )
                timed: dict[tuple[str, Arch], Sequence[PassRecord]] = {}
                stats = run_protocol(
                    {k: ld.run for k, ld in {**loaded, **refs}.items()},
                    protocol,
                    rng=rng,
                    timer=profile_timer(profile),
                    checkpoint=timed.update,
                )
            finally:
                for ld in loaded.values():
                    ld.release()
            speeds = pass_speeds(timed)
            for (kind, arch), st in stats.items():
                if kind == "subnet":
                    timings[arch] = st
                    chunk_of[arch] = index
                    if len(timed.get((kind, arch), ())) >= 2:
                        halves[arch] = split_half_p50(timed[(kind, arch)], speeds)
            ref_timings.append({arch: st for (kind, arch), st in stats.items() if kind == "ref"})
            bar.update(len(part))
    finally:
        for ld in refs.values():
            ld.release()
        bar.close()
        if pool is not None:
            pool.shutdown()
    return Measured(timings, chunk_of, tuple(ref_timings), halves)


def validate_lut(
    table: LatencyTable,
    *,
    subnets: int = 100,
    seed: int = 1,
    resolution: int | None = None,
    runner: Runner | None = None,
    chunk: int = 40,
    progress: bool = False,
    references: int = 6,
    passes: int | None = None,
) -> FidelityReport:
    """Measure held-out subnets whole on the table's device profile and compare with LUT, raw-sum and FLOPs predictions.

    With `references` > 0, that many of the table's calibration subnets are re-timed in every chunk (never a held-out
    one) and the report also carries every comparison with predictions scaled by the chunk's machine speed factor
    (`hwnas.latency.drift`): the plain numbers say how well the table predicts this machine as it is now, the corrected
    ones how well it predicts once the machine-wide drift since the build is taken out. `passes` overrides the number
    of interleaved timing passes per subnet (`whole_model_protocol`).
    """
    from hwnas.blocks import arch_macs

    started = time.monotonic()
    space = table.space()
    profile = profile_from_dict(table.meta.get("profile"), where=f"LUT {table.source} metadata")
    if profile.remote:
        raise HwnasError(f"LUT {table.source} was measured on a remote device ({profile.name}); validate it there")
    whole_model_protocol(profile, warmup_s=0.0, passes=passes)  # a bad `passes` fails before anything is exported
    resolutions = (resolution,) if resolution is not None else (table.resolutions or space.resolutions)
    if resolution is not None and resolution not in (table.resolutions or space.resolutions):
        raise HwnasError(f"resolution {resolution} is not in LUT {table.source} ({list(table.resolutions)})")
    cal_meta = table.meta.get("calibration") or {}
    cal_points = cal_meta.get("subnets", [])
    if not cal_points:
        raise HwnasError(
            f"LUT {table.source} has no calibration subnets, so FLOPs cannot be calibrated; rebuild it "
            "with 'hwnas profile' (calib_subnets > 0)"
        )
    exclude = {p["arch"] for p in cal_points}
    archs = heldout_archs(space, subnets, resolutions=resolutions, exclude=exclude, seed=seed)
    refs = reference_archs(table, resolutions=resolutions, n=references)
    predictor = LatencyPredictor(table, space)
    measured = measure_archs(
        space,
        archs,
        profile,
        runner=runner or make_runner(profile),
        chunk=chunk,
        progress=progress,
        references=[r.arch for r in refs],
        passes=passes,
    )
    speeds = (
        tuple(speed_factor(refs, {a: st.p50_ms for a, st in rt.items()}) for rt in measured.reference_timings)
        if refs
        else ()
    )
    meas = np.array([measured.timings[a].p50_ms for a in archs])
    pred = predictor.predict_many(archs)
    raw = np.array([predictor.raw_ms(a) for a in archs])
    flops_cal = fit_calibration(
        [
            CalibrationPoint(
                p["arch"],
                Arch.parse(p["arch"]).resolution,
                arch_macs(space, Arch.parse(p["arch"])) / 1e6,
                p["measured_ms"],
            )
            for p in cal_points
        ]
    )
    macs = np.array([arch_macs(space, a) / 1e6 for a in archs])
    flops = np.array([flops_cal.apply(m, a.resolution) for m, a in zip(macs, archs)])
    speed = np.array([speeds[measured.chunk_of[a]] for a in archs]) if speeds else None
    halves = np.array([measured.halves.get(a, (float("nan"), float("nan"))) for a in archs]).reshape(len(archs), 2)
    records = tuple(
        {
            "arch": str(a),
            "resolution": a.resolution,
            "measured_ms": float(m),
            "measured_cv": measured.timings[a].cv,
            "measured_halves_ms": [float(h) for h in halves[i]],
            "predicted_ms": float(p),
            "raw_sum_ms": float(r),
            "mmacs": float(mm),
            "flops_pred_ms": float(f),
            "speed_factor": None if speed is None else float(speed[i]),
        }
        for i, (a, m, p, r, mm, f) in enumerate(zip(archs, meas, pred, raw, macs, flops))
    )
    corrected = None
    if speed is not None:
        corrected = DriftCorrected(
            lut=fit_stats(pred * speed, meas),
            raw=fit_stats(raw * speed, meas),
            flops=fit_stats(flops * speed, meas),
            speed_factors=speeds,
            references=tuple(str(r.arch) for r in refs),
            retest_kendall_tau=kendall_tau(halves[:, 0] / speed, halves[:, 1] / speed),
        )
    return FidelityReport(
        lut=fit_stats(pred, meas),
        raw=fit_stats(raw, meas),
        flops=fit_stats(flops, meas),
        subnets=len(archs),
        seconds=round(time.monotonic() - started, 1),
        records=records,
        drift_corrected=corrected,
        retest_kendall_tau=kendall_tau(halves[:, 0], halves[:, 1]),
    )


def plot_fidelity(report: FidelityReport, path: Path, *, title: str) -> Path:
    """Predicted-vs-measured scatter (LUT, raw sum, FLOPs) with the ±10% band, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwnas.atomic import atomic_path

    meas = np.array([r["measured_ms"] for r in report.records])
    fig, ax = plt.subplots(figsize=(6, 6))
    lo, hi = float(meas.min()) * 0.8, float(meas.max()) * 1.15
    for key, label, marker in (
        ("raw_sum_ms", f"raw sum (τ {report.raw.kendall_tau:.3f})", "x"),
        ("flops_pred_ms", f"FLOPs fit (τ {report.flops.kendall_tau:.3f}, MAPE {report.flops.mape:.1%})", "^"),
        ("predicted_ms", f"LUT (τ {report.lut.kendall_tau:.3f}, MAPE {report.lut.mape:.1%})", "o"),
    ):
        ax.scatter(meas, [r[key] for r in report.records], s=10, marker=marker, alpha=0.6, label=label)
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="grey", alpha=0.15, label="±10%")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured ms", ylabel="predicted ms", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
