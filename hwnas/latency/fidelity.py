"""Fidelity reports: how well a table predicts whole subnets that were timed, and the figures every report shows.

One report for every place subnets are timed whole against a table: `hwnas latency validate` times held-out subnets here
(`hwnas.latency.validate`), a bundle made with `--validate N` times them on the device and `hwnas profile --import`
turns them into the same report, stored in the table's metadata. Compared with the measurements: the calibrated LUT,
the raw sum of its rows, and FLOPs (fvcore MACs) calibrated with the table's calibration subnets and the same
per-resolution line — share within ±5% / ±10%, MAPE, worst error, Kendall τ; with drift references timed in every
chunk, the same again with predictions × the machine's speed factor (`hwnas.latency.drift`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.calibrate import CalibrationPoint, fit_calibration
from hwnas.latency.drift import Reference, speed_factor
from hwnas.latency.harness import TimingStats
from hwnas.latency.lut import LatencyTable
from hwnas.latency.predictor import LatencyPredictor
from hwnas.space import Arch
from hwnas.stats import kendall_tau

__all__ = [
    "Fit",
    "fit_stats",
    "DriftCorrected",
    "FidelityReport",
    "Measured",
    "fidelity_report",
    "calibration_arch_strs",
    "kendall_tau",
]


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

    def to_meta(self) -> dict[str, Any]:
        """Everything the report holds, as plain JSON (NaN as null): stored in a table's metadata by
        `hwnas profile --import`, read back by `from_meta` where the device cannot be timed."""
        return _json_safe(dataclasses.asdict(self))

    @classmethod
    def from_meta(cls, data: Mapping[str, Any]) -> FidelityReport:
        def fit(d: Mapping[str, Any]) -> Fit:
            return Fit(**{f.name: _nan_if_none(d.get(f.name)) for f in dataclasses.fields(Fit)})

        dc = data.get("drift_corrected")
        return cls(
            lut=fit(data["lut"]),
            raw=fit(data["raw"]),
            flops=fit(data["flops"]),
            subnets=int(data["subnets"]),
            seconds=float(data.get("seconds") or 0.0),
            records=tuple(dict(r) for r in data.get("records", ())),
            drift_corrected=None
            if not dc
            else DriftCorrected(
                lut=fit(dc["lut"]),
                raw=fit(dc["raw"]),
                flops=fit(dc["flops"]),
                speed_factors=tuple(float(x) for x in dc["speed_factors"]),
                references=tuple(str(x) for x in dc["references"]),
                retest_kendall_tau=_nan_if_none(dc.get("retest_kendall_tau")),
            ),
            retest_kendall_tau=_nan_if_none(data.get("retest_kendall_tau")),
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    return value


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Measured:
    """Whole-subnet timings, the chunk each subnet was timed in, the reference subnets' timings per chunk, and per subnet
    the p50 of its even and of its odd passes (`split_half_p50`)."""

    timings: dict[Arch, TimingStats]
    chunk_of: dict[Arch, int]
    reference_timings: tuple[dict[Arch, TimingStats], ...]
    halves: dict[Arch, tuple[float, float]] = field(default_factory=dict)


def calibration_arch_strs(table: LatencyTable) -> set[str]:
    """The table's calibration subnets (never held out); a table without them cannot calibrate FLOPs: an error."""
    points = (table.meta.get("calibration") or {}).get("subnets", [])
    if not points:
        raise HwnasError(
            f"LUT {table.source} has no calibration subnets, so FLOPs cannot be calibrated; rebuild it "
            "with 'hwnas profile' (calib_subnets > 0)"
        )
    return {str(p["arch"]) for p in points}


def fidelity_report(
    table: LatencyTable,
    archs: Sequence[Arch],
    measured: Measured,
    references: Sequence[Reference] = (),
    *,
    seconds: float = 0.0,
) -> FidelityReport:
    """Compare the table's predictions (calibrated, raw sum) and calibrated FLOPs with `measured` whole-subnet timings.

    The one report behind `hwnas latency validate` (timed here) and `hwnas profile --import` (timed on the device by a
    bundle with --validate). FLOPs are calibrated on the table's own calibration subnets; with `references` timed in
    every chunk (`measured.reference_timings`), every comparison is also made with predictions × the chunk's speed
    factor relative to the references' `built_ms`."""
    from hwnas.blocks import arch_macs  # torch models: imported when a report is made

    space = table.space()
    overlap = sorted(calibration_arch_strs(table) & {str(a) for a in archs})
    if overlap:
        raise HwnasError(f"subnet {overlap[0]} is a calibration subnet of LUT {table.source}, not a held-out one")
    speeds = (
        tuple(speed_factor(references, {a: st.p50_ms for a, st in rt.items()}) for rt in measured.reference_timings)
        if references
        else ()
    )
    predictor = LatencyPredictor(table, space)
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
            for p in table.meta["calibration"]["subnets"]
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
            references=tuple(str(r.arch) for r in references),
            retest_kendall_tau=kendall_tau(halves[:, 0] / speed, halves[:, 1] / speed),
        )
    return FidelityReport(
        lut=fit_stats(pred, meas),
        raw=fit_stats(raw, meas),
        flops=fit_stats(flops, meas),
        subnets=len(archs),
        seconds=round(seconds, 1),
        records=records,
        drift_corrected=corrected,
        retest_kendall_tau=kendall_tau(halves[:, 0], halves[:, 1]),
    )
