"""How the benchmarks record a fidelity report (`hwnas.latency.fidelity.FidelityReport`) in their results: every
comparison (calibrated LUT, raw block sum, FLOPs) as measured and × speed factor, rounded, undefined values as null."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hwnas.latency.fidelity import FidelityReport, Fit


def _number(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def fit_dict(f: Fit) -> dict[str, float | None]:
    return {k: _number(v) for k, v in dataclasses.asdict(f).items()}


def report_dict(r: FidelityReport) -> dict[str, Any]:
    dc = r.drift_corrected
    return {
        "subnets": r.subnets,
        "seconds": r.seconds,
        "lut": fit_dict(r.lut),
        "raw_sum": fit_dict(r.raw),
        "flops": fit_dict(r.flops),
        "retest_kendall_tau": _number(r.retest_kendall_tau),
        "drift_corrected": None
        if dc is None
        else {
            "lut": fit_dict(dc.lut),
            "raw_sum": fit_dict(dc.raw),
            "flops": fit_dict(dc.flops),
            "speed_factors": [round(s, 4) for s in dc.speed_factors],
            "references": len(dc.references),
        },
    }
