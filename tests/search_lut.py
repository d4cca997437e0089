"""A synthetic but structurally real LUT for search tests: every block row of a space, priced by a MAC-like formula.

Real `LatencyTable` / `load_lut` code paths, no profiling time: search tests must not depend on machine noise.
"""

from __future__ import annotations

from pathlib import Path

from hwnas.latency.harness import TimingStats
from hwnas.latency.lut import SCHEMA, LatencyTable, save_lut, space_meta
from hwnas.space import BlockSpec, SpaceSpec, distinct_blocks


def block_ms(b: BlockSpec) -> float:
    """Depthwise-heavy cost model (so kernel size matters like on real CPUs) plus a per-block overhead."""
    mid = b.mid_ch
    out_hw = b.out_hw
    macs = b.in_hw**2 * b.in_ch * mid + out_hw**2 * mid * (b.kernel**2 * 3 + b.out_ch)
    return 0.004 + macs * 2e-8


def synthetic_table(space: SpaceSpec, *, resolutions: tuple[int, ...] | None = None) -> LatencyTable:
    rows = {}
    for specs in distinct_blocks(space, resolutions).values():
        for spec in specs:
            ms = block_ms(spec)
            rows[spec.key] = TimingStats(ms, ms * 1.1, 0.01, 50)
    meta = {
        "schema": SCHEMA,
        "device": "synthetic",
        "space": space_meta(space),
        "resolutions": list(resolutions or space.resolutions),
        "calibration": {"slope": 1.08, "offset_ms": 0.02, "per_resolution": {}},
    }
    return LatencyTable(rows, meta, source="<synthetic>")


def write_table(space: SpaceSpec, path: Path) -> Path:
    return save_lut(synthetic_table(space), path)
