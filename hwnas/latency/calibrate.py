"""Calibration: from a sum of isolated block latencies to a whole-model prediction.

Why: a block timed alone runs with its weights and input hot in cache and pays one session call; inside a whole network
it does not, and the network adds its own per-run cost (one input copy, one output, the executor walking more nodes).
Measured here (ORT CPU, 1 thread) the raw sum is always too low, by a share that grows as models get smaller. A straight
line per resolution, `measured ≈ a·sum + b`, fitted by least squares on a few whole subnets timed in the same interleaved
passes as the blocks, absorbs both: `a` the proportional (cache/memory-traffic) part, `b` the fixed per-run overhead.
Resolutions with too few calibration subnets share one global line.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.space import Arch, SpaceSpec, largest, sample, smallest

__all__ = ["Calibration", "IDENTITY", "CalibrationPoint", "fit_linear", "fit_calibration", "calibration_archs",
           "CORRECTS", "MIN_PER_RESOLUTION"]

CORRECTS = ("whole-model latency minus the sum of isolated block latencies: the per-run overhead of one session "
            "(offset b) and the cache/memory-traffic slowdown of blocks inside a network (slope a), per resolution")
MIN_PER_RESOLUTION = 5


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    arch: str
    resolution: int
    raw_sum_ms: float
    measured_ms: float
    measured_cv: float = 0.0


@dataclass(frozen=True, slots=True)
class Calibration:
    """`predicted = slope·raw_sum + offset_ms`, with an own (slope, offset) for resolutions that had enough subnets."""

    slope: float = 1.0
    offset_ms: float = 0.0
    per_resolution: tuple[tuple[int, float, float], ...] = ()

    def coef(self, resolution: int) -> tuple[float, float]:
        for res, slope, offset in self.per_resolution:
            if res == resolution:
                return slope, offset
        return self.slope, self.offset_ms

    def apply(self, raw_ms: float, resolution: int) -> float:
        slope, offset = self.coef(resolution)
        return slope * raw_ms + offset

    def to_meta(self) -> dict[str, Any]:
        return {"form": "ms = slope * raw_sum_ms + offset_ms (per resolution when listed, else global)",
                "corrects": CORRECTS, "slope": self.slope, "offset_ms": self.offset_ms,
                "per_resolution": {str(r): {"slope": a, "offset_ms": b} for r, a, b in self.per_resolution}}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> Calibration:
        if not meta:
            return IDENTITY
        per = tuple(sorted((int(r), float(v["slope"]), float(v["offset_ms"]))
                           for r, v in dict(meta.get("per_resolution", {})).items()))
        return cls(float(meta.get("slope", 1.0)), float(meta.get("offset_ms", 0.0)), per)


IDENTITY = Calibration()


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares `y ≈ a·x + b`; with one point or no spread in x, a pure ratio (b = 0)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xs) == 0:
        return 1.0, 0.0
    if len(xs) < 3 or float(np.ptp(xs)) <= 1e-9 * max(1.0, float(np.abs(xs).max())):
        return float(np.sum(ys) / np.sum(xs)), 0.0
    a, b = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def fit_calibration(points: Sequence[CalibrationPoint], *, min_per_resolution: int = MIN_PER_RESOLUTION) -> Calibration:
    """Global line over all points, plus one line per resolution that has at least `min_per_resolution` points."""
    slope, offset = fit_linear([p.raw_sum_ms for p in points], [p.measured_ms for p in points])
    per = []
    for res in sorted({p.resolution for p in points}):
        sub = [p for p in points if p.resolution == res]
        if len(sub) >= min_per_resolution:
            a, b = fit_linear([p.raw_sum_ms for p in sub], [p.measured_ms for p in sub])
            per.append((res, a, b))
    return Calibration(slope, offset, tuple(per))


def calibration_archs(space: SpaceSpec, k: int, *, resolutions: Sequence[int], seed: int = 20_231) -> list[Arch]:
    """`k` distinct subnets spread evenly over `resolutions`: the smallest and largest at each (leverage for the
    slope), the rest uniform samples. Deterministic, so `validate` can exclude exactly these."""
    rng = random.Random(seed)
    per_res = {res: [] for res in resolutions}  # type: dict[int, list[Arch]]
    for i in range(k):
        res = resolutions[i % len(resolutions)]
        picked = per_res[res]
        if len(picked) == 0:
            candidate = smallest(space, resolution=res)
        elif len(picked) == 1:
            candidate = largest(space, resolution=res)
        else:
            candidate = sample(space, rng, resolution=res)
            for _ in range(100):
                if candidate not in picked:
                    break
                candidate = sample(space, rng, resolution=res)
        picked.append(candidate)
    return [arch for res in resolutions for arch in per_res[res]]
