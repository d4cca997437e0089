"""Calibration: from a sum of isolated block latencies to a whole-model prediction.

What is fitted: whole subnets' measured latency as

    measured ≈ a_r·sum + b_r + c·E + w·P

with `sum` the raw sum of the subnet's LUT rows at resolution r, and

- `a_r`, `b_r` — one straight line per resolution (`fit_linear`); resolutions with fewer than `MIN_PER_RESOLUTION`
  calibration subnets share one global line. `a` is the proportional part (a block inside a network does not find its
  weights and input hot in cache as it does when timed alone), `b` the fixed per-run overhead of a whole network (one
  input copy, one output, the executor walking more nodes) that a sum of separately timed blocks does not contain;
- `c·E` — E the elements (millions) of every tensor passed from one block to the next (`boundary_melems`). A block timed
  alone reads its input from and writes its output to session buffers (and onnxruntime reorders them to and from its
  blocked layout); inside a network those tensors pass straight to the next node. That cost grows with the tensors
  handed between blocks, not with a block's compute, so a per-resolution line cannot absorb it. c is shared by all
  resolutions and is expected to be negative: the isolated blocks paid it, the network does not;
- `w·P` — P the weight elements (millions, BatchNorm folded) of the final stage's layers (`final_stage_mweights`). The
  final stage carries the largest weights on the smallest maps: timed alone and repeated, its blocks keep their weights
  in cache, inside a network they do not, so networks with a deeper or wider final stage run slower than the lines say.
  A cache miss costs per byte read, not per ms of compute, hence a term in weights rather than in the rows' ms. A fit
  with w < 0 (weights cheaper cold than hot: noise) drops the term.

How: least squares on whole calibration subnets timed in the same interleaved passes as the blocks (`profiler`), so they
see the same machine state as the rows they correct, on *relative* residuals (each divided by the subnet's measured
latency): fidelity is judged in relative error, and a space's subnets can span 50× (mbv3-tiny on ExecuTorch: 0.07–3.5
ms), where absolute residuals let the few largest subnets set every line — there 38% of 60 held-out subnets fell within
±10% (× speed factor) with absolute residuals and 24 calibration subnets, 72% with relative ones (the same timings
refitted), and all 60 with relative ones and 48 calibration subnets; on onnxruntime, whose subnets span 4×, the two
agree within one subnet of 60. The shared terms are added in order (c, then w) and only with enough data — the first
once `MIN_SPARE_POINTS` calibration subnets are left over beyond all fitted parameters, each further one with
`MIN_SPARE_POINTS` more — because on a small calibration set they overfit. A term with no spread stops the list there; a
joint fit that comes out implausible (a line that does not rise with the sum, or w < 0) is retried with fewer terms
(`_fit_shared`). How well the calibrated table predicts held-out subnets is measured by `hwnas latency validate`
(results in bench/results/lut_fidelity*.json).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.space import Arch, BlockSpec, SpaceSpec, blocks_of, largest, sample, smallest

__all__ = [
    "Calibration",
    "IDENTITY",
    "CalibrationPoint",
    "fit_linear",
    "fit_calibration",
    "calibration_archs",
    "CORRECTS",
    "MIN_PER_RESOLUTION",
    "block_input_melems",
    "boundary_melems",
    "block_weight_melems",
    "final_stage_mweights",
]

CORRECTS = (
    "whole-model latency minus the sum of isolated block latencies: the per-run overhead of one session "
    "(offset b) and the cache/memory-traffic slowdown of blocks inside a network (slope a), per resolution, "
    "and the input/output traffic an isolated block pays per element of the tensors passed between blocks "
    "(c, shared by all resolutions), and the cache misses of the final stage's weight-heavy blocks inside a "
    "network (w per million weights of the final stage, shared by all resolutions)"
)
MIN_PER_RESOLUTION = 5
# the boundary term is fitted only when this many calibration subnets are left over beyond the fitted parameters:
# with only a handful of spare subnets it overfits and ranks held-out subnets worse than the lines alone, with a few
# dozen over several resolutions it ranks them better. Each further shared term (the final stage's weights) needs this
# many more.
MIN_SPARE_POINTS = 12


def block_input_melems(spec: BlockSpec) -> float:
    """Elements (in millions) of the tensor a block receives from the block before it, at batch 1."""
    return spec.in_ch * spec.in_hw * spec.in_hw / 1e6


def boundary_melems(space: SpaceSpec, arch: Arch) -> float:
    """E of the calibration: elements (millions) of every tensor passed from one block to the next (all but the stem's
    input, which the session feeds alike in isolation and in the network)."""
    return float(sum(block_input_melems(b) for b in blocks_of(space, arch)[1:]))


def block_weight_melems(spec: BlockSpec) -> float:
    """Elements (millions) of a block's weights and biases as exported (BatchNorm folded into the convolutions)."""
    mid = spec.mid_ch
    if spec.op == "conv":
        return (spec.in_ch * spec.out_ch * spec.kernel**2 + spec.out_ch) / 1e6
    if spec.op == "head":
        return (
            spec.in_ch * mid + mid + mid * spec.feat_ch + spec.feat_ch + spec.feat_ch * spec.out_ch + spec.out_ch
        ) / 1e6
    n = mid * spec.kernel**2 + mid + mid * spec.out_ch + spec.out_ch  # depthwise, project
    if spec.expand != 1:
        n += spec.in_ch * mid + mid
    if spec.se:
        n += 2 * mid * spec.se_ch + spec.se_ch + mid
    return n / 1e6


def final_stage_mweights(space: SpaceSpec, arch: Arch) -> float:
    """P of the calibration: weight elements (millions) of the arch's final-stage layers."""
    blocks = blocks_of(space, arch)  # stem, first block, the stages' layers in order, head
    return float(sum(block_weight_melems(b) for b in blocks[-1 - len(arch.stages[-1]) : -1]))


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    arch: str
    resolution: int
    raw_sum_ms: float
    measured_ms: float
    measured_cv: float = 0.0
    boundary_melems: float = 0.0
    final_stage_mweights: float = 0.0


@dataclass(frozen=True, slots=True)
class Calibration:
    """`predicted = slope·raw_sum + offset_ms + ms_per_boundary_melem·E + ms_per_final_stage_mweight·P`, with an own
    (slope, offset) for resolutions that had enough subnets (E: `boundary_melems`, P: `final_stage_mweights`; the
    shared coefficients are 0 for tables fitted without them)."""

    slope: float = 1.0
    offset_ms: float = 0.0
    per_resolution: tuple[tuple[int, float, float], ...] = ()
    ms_per_boundary_melem: float = 0.0
    ms_per_final_stage_mweight: float = 0.0

    def coef(self, resolution: int) -> tuple[float, float]:
        for res, slope, offset in self.per_resolution:
            if res == resolution:
                return slope, offset
        return self.slope, self.offset_ms

    def apply(
        self, raw_ms: float, resolution: int, boundary_melems: float = 0.0, final_stage_mweights: float = 0.0
    ) -> float:
        slope, offset = self.coef(resolution)
        return (
            slope * raw_ms
            + offset
            + self.ms_per_boundary_melem * boundary_melems
            + self.ms_per_final_stage_mweight * final_stage_mweights
        )

    def to_meta(self) -> dict[str, Any]:
        return {
            "form": "ms = slope * raw_sum_ms + offset_ms (per resolution when listed, else global) "
            "+ ms_per_boundary_melem * boundary_melems + ms_per_final_stage_mweight * final_stage_mweights",
            "corrects": CORRECTS,
            "slope": self.slope,
            "offset_ms": self.offset_ms,
            "per_resolution": {str(r): {"slope": a, "offset_ms": b} for r, a, b in self.per_resolution},
            "ms_per_boundary_melem": self.ms_per_boundary_melem,
            "ms_per_final_stage_mweight": self.ms_per_final_stage_mweight,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> Calibration:
        if not meta:
            return IDENTITY
        if float(meta.get("final_stage_extra_slope", 0.0)) != 0.0:  # an older form of the final-stage term (rows' ms)
            raise HwnasError(
                "this LUT's calibration has the final-stage term of an earlier hwnas "
                "(final_stage_extra_slope); rebuild the table with 'hwnas profile --fresh'"
            )
        per = tuple(
            sorted(
                (int(r), float(v["slope"]), float(v["offset_ms"]))
                for r, v in dict(meta.get("per_resolution", {})).items()
            )
        )
        return cls(
            float(meta.get("slope", 1.0)),
            float(meta.get("offset_ms", 0.0)),
            per,
            float(meta.get("ms_per_boundary_melem", 0.0)),
            float(meta.get("ms_per_final_stage_mweight", 0.0)),
        )


IDENTITY = Calibration()


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares `y ≈ a·x + b` on relative residuals; with one point or no spread in x, a pure ratio (b = 0)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xs) == 0:
        return 1.0, 0.0
    if len(xs) < 3 or float(np.ptp(xs)) <= 1e-9 * max(1.0, float(np.abs(xs).max())):
        return float(np.sum(ys) / np.sum(xs)), 0.0
    a, b = np.polyfit(xs, ys, 1, w=1.0 / np.maximum(np.abs(ys), 1e-12))  # relative residuals (module docstring)
    return float(a), float(b)


def fit_calibration(points: Sequence[CalibrationPoint], *, min_per_resolution: int = MIN_PER_RESOLUTION) -> Calibration:
    """Global line over all points, plus one line per resolution that has at least `min_per_resolution` points; with
    boundary elements on the points and enough of them (`MIN_SPARE_POINTS` beyond the parameters), the lines and the
    shared boundary term `c` are fitted jointly by least squares, and with `MIN_SPARE_POINTS` more also the final
    stage's weights term `w`."""
    slope, offset = fit_linear([p.raw_sum_ms for p in points], [p.measured_ms for p in points])
    own = [
        res
        for res in sorted({p.resolution for p in points})
        if sum(p.resolution == res for p in points) >= min_per_resolution
    ]
    per = []
    for res in own:
        sub = [p for p in points if p.resolution == res]
        a, b = fit_linear([p.raw_sum_ms for p in sub], [p.measured_ms for p in sub])
        per.append((res, a, b))
    plain = Calibration(slope, offset, tuple(per))
    groups = own + ([None] if any(p.resolution not in own for p in points) else [])  # None: the global line
    n_lines = 2 * len(groups)
    shared = [
        np.array([p.boundary_melems for p in points], dtype=np.float64),
        np.array([p.final_stage_mweights for p in points], dtype=np.float64),
    ]
    # terms in order of evidence, each MIN_SPARE_POINTS more subnets; a term with no spread ends the list
    n_shared = 0
    while (
        n_shared < len(shared)
        and float(np.ptp(shared[n_shared])) > 0.0
        and len(points) >= n_lines + n_shared + 1 + MIN_SPARE_POINTS * (n_shared + 1)
    ):
        n_shared += 1
    for k in range(n_shared, 0, -1):
        fitted = _fit_shared(points, groups, shared[:k])
        if fitted is not None:
            lines, coefs = fitted
            glob = lines.pop(None, (slope, offset))
            coefs += [0.0] * (len(shared) - k)
            return Calibration(glob[0], glob[1], tuple((res, *lines[res]) for res in own), coefs[0], coefs[1])
    return plain


def _fit_shared(
    points: Sequence[CalibrationPoint], groups: list[int | None], shared: list[np.ndarray]
) -> tuple[dict[int | None, tuple[float, float]], list[float]] | None:
    """Least squares of one line per group (a resolution, or None: all other points) and the shared terms jointly;
    None when a line would not rise with the block sum or the final stage's weights would come out cheaper cold than
    hot (w < 0) — then fewer terms are tried."""
    n_lines = 2 * len(groups)
    design = np.zeros((len(points), n_lines + len(shared)))
    for i, p in enumerate(points):
        g = groups.index(p.resolution if p.resolution in groups else None)
        design[i, 2 * g], design[i, 2 * g + 1] = p.raw_sum_ms, 1.0
    for j, column in enumerate(shared):
        design[:, n_lines + j] = column
    measured = np.array([p.measured_ms for p in points])
    weight = 1.0 / np.maximum(np.abs(measured), 1e-12)  # relative residuals, as in fit_linear
    coef, *_ = np.linalg.lstsq(design * weight[:, None], measured * weight, rcond=None)
    slopes = coef[0:n_lines:2]
    if not np.all(np.isfinite(coef)) or np.any(slopes <= 0):
        return None
    if len(shared) > 1 and coef[n_lines + 1] < 0:
        return None
    lines = {g: (float(coef[2 * i]), float(coef[2 * i + 1])) for i, g in enumerate(groups)}
    return lines, [float(c) for c in coef[n_lines:]]


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
