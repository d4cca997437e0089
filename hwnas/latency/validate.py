"""`hwnas latency validate`: does the table predict whole subnets it has never seen?

N held-out random subnets (never the calibration ones) are exported whole and timed with the same robust protocol as the
blocks, interleaved in chunks with a few drift references; `hwnas.latency.fidelity` compares the predictions with the
measurements (calibrated LUT, raw sum, calibrated FLOPs). A LUT that cannot beat calibrated FLOPs is not worth its
profiling time. The report types are re-exported here, where their users have always found them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.drift import reference_archs
from hwnas.latency.fidelity import (
    DriftCorrected,
    FidelityReport,
    Fit,
    Measured,
    calibration_arch_strs,
    fidelity_report,
    fit_stats,
    kendall_tau,
)
from hwnas.latency.harness import (
    PassRecord,
    TimingStats,
    pass_speeds,
    run_protocol,
    split_half_p50,
    whole_model_protocol,
)
from hwnas.latency.lut import LatencyTable
from hwnas.latency.profiles import DeviceProfile, profile_from_dict, profile_timer
from hwnas.latency.runtime import Runner, export_many, export_pool, make_runner
from hwnas.space import Arch, SpaceSpec, sample

__all__ = [
    "measure_archs",
    "Measured",
    "FidelityReport",
    "DriftCorrected",
    "Fit",
    "kendall_tau",
    "fit_stats",
    "validate_lut",
    "fidelity_report",
    "heldout_archs",
    "plot_fidelity",
]

log = logging.getLogger(__name__)


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
        if hasattr(runner, "prepare"):  # runners that lower slowly: in worker processes, into their cache
            runner.prepare(models, progress=progress)
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
        if hasattr(runner, "close"):
            runner.close()  # the lowering workers, kept from chunk to chunk
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
    started = time.monotonic()
    space = table.space()
    profile = profile_from_dict(table.meta.get("profile"), where=f"LUT {table.source} metadata")
    if profile.remote:
        raise HwnasError(
            f"LUT {table.source} was measured on a remote device ({profile.name}) and cannot be timed here; "
            "make its bundle with --validate N to get the device's own fidelity report"
        )
    whole_model_protocol(profile, warmup_s=0.0, passes=passes)  # a bad `passes` fails before anything is exported
    resolutions = (resolution,) if resolution is not None else (table.resolutions or space.resolutions)
    if resolution is not None and resolution not in (table.resolutions or space.resolutions):
        raise HwnasError(f"resolution {resolution} is not in LUT {table.source} ({list(table.resolutions)})")
    archs = heldout_archs(space, subnets, resolutions=resolutions, exclude=calibration_arch_strs(table), seed=seed)
    refs = reference_archs(table, resolutions=resolutions, n=references)
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
    return fidelity_report(table, archs, measured, refs, seconds=time.monotonic() - started)


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
