"""How fast the machine runs now compared with when a LUT was built: the drift reference of validate and export.

Why: on shared machines the same subnet runs noticeably slower or faster over minutes, and can slow down far more over
hours, while models timed back to back move together. A table's calibration subnets were timed whole
when it was built (their `measured_ms` is in its meta). Re-timing a few of them interleaved with the models being
measured now gives the machine's current speed relative to the table, s = median(now / then), from models that are
never the ones being judged. Prediction × s is what the table says for the machine in its present state. Reports carry
the plain and the drift-corrected comparison side by side, never one without the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.latency.lut import LatencyTable
from hwnas.space import Arch

__all__ = ["Reference", "reference_archs", "speed_factor"]


@dataclass(frozen=True, slots=True)
class Reference:
    """A calibration subnet of a table and its whole-model latency when the table was built."""

    arch: Arch
    built_ms: float


def reference_archs(table: LatencyTable, *, resolutions: Sequence[int], n: int = 6) -> tuple[Reference, ...]:
    """Up to `n` calibration subnets at `resolutions`, spread evenly over their latency range (deterministic).

    Spread, not the fastest: a slow phase of the machine may hit small (overhead-bound) and large (cache-bound) models
    differently, and the median over a spread is robust to one noisy reference.
    """
    points = [
        p
        for p in (table.meta.get("calibration") or {}).get("subnets", [])
        if Arch.parse(p["arch"]).resolution in set(resolutions) and p.get("measured_ms")
    ]
    if n <= 0 or not points:
        return ()
    points.sort(key=lambda p: (p["measured_ms"], p["arch"]))
    picks = sorted({int(round(i)) for i in np.linspace(0, len(points) - 1, min(n, len(points)))})
    return tuple(Reference(Arch.parse(points[i]["arch"]), float(points[i]["measured_ms"])) for i in picks)


def speed_factor(references: Sequence[Reference], now_ms: Mapping[Arch, float]) -> float:
    """median(now / built) over the references timed now; > 1 means the machine runs slower than at build time."""
    ratios = [now_ms[r.arch] / r.built_ms for r in references if r.arch in now_ms and r.built_ms > 0]
    if not ratios:
        raise ValueError("no reference subnet was timed")
    return float(np.median(ratios))
