"""Latency prediction from a LUT: calibrated sums of block rows, scalar and vectorized.

An arch's latency is additive over its blocks, so per resolution the table folds into per-stage arrays
``[layer position, choice]`` of (calibrated) ms plus one fixed term (stem + first block + head + offset). The same arrays
serve three users: `predict_many` (a population as integer indices + one numpy gather), `choice_latency_ms` (FBNet's
differentiable expected latency Σ softmax(α)·LUT) and `latency_range_ms` (exact min/max by a per-stage scan).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.calibrate import Calibration, block_input_melems, block_weight_melems
from hwnas.latency.lut import LatencyTable
from hwnas.space import (
    Arch,
    SpaceSpec,
    blocks_of,
    check_arch,
    first_block,
    head_block,
    layer_block,
    layer_choices,
    space_hash,
    stage_input_hw,
    stem_block,
)

__all__ = ["LatencyPredictor", "ChoiceLatency", "predict_ms", "raw_sum_ms", "choice_latency_ms", "latency_range_ms"]


class ChoiceLatency(NamedTuple):
    """Per stage an array [layer position 0..max_depth-1, choice index in `layer_choices(stage)` order] of calibrated ms,
    plus the fixed ms (stem + first block + head + calibration offset, and their boundary terms). Any arch at this
    resolution predicts as ``fixed_ms + Σ_stages Σ_{kept positions p} stage_ms[s][p, choice]`` — exactly
    `LatencyPredictor.predict`."""

    stage_ms: tuple[np.ndarray, ...]
    fixed_ms: float


def raw_sum_ms(table: LatencyTable, space: SpaceSpec, arch: Arch) -> float:
    """Uncalibrated sum of the arch's block rows (stem, first block, layers, head); a missing row is an error."""
    return float(sum(table.ms(spec.key) for spec in blocks_of(space, arch)))


def _check_space(table: LatencyTable, space: SpaceSpec) -> None:
    if table.space_hash != space_hash(space):
        raise HwnasError(
            f"LUT {table.source} was built for space {table.space_name!r} (hash {table.space_hash}), not "
            f"{space.name!r} (hash {space_hash(space)}); {table.fix_hint()}"
        )


def _raw_arrays(
    table: LatencyTable, space: SpaceSpec, resolution: int, *, strict: bool
) -> tuple[list[np.ndarray], float, list[np.ndarray], float, np.ndarray]:
    """Raw per-stage [position, choice] ms and the fixed raw ms (missing rows: error when strict, else NaN), the
    same layout of the calibration's boundary elements (`block_input_melems`; the stem's input is not one), and of the
    final stage's weights (`block_weight_melems`)."""

    def ms(key: str) -> float:
        if strict or key in table:
            return table.ms(key)
        return float("nan")

    first, head = first_block(space, resolution), head_block(space, resolution)
    fixed = ms(stem_block(space, resolution).key) + ms(first.key) + ms(head.key)
    fixed_melems = block_input_melems(first) + block_input_melems(head)
    stages, melems, weights = [], [], []
    for i, (stage, in_hw) in enumerate(zip(space.stages, stage_input_hw(space, resolution))):
        choices = layer_choices(stage)
        arr = np.empty((max(stage.depths), len(choices)), dtype=np.float64)
        elems, wts = np.empty_like(arr), np.empty_like(arr)
        for pos in range(arr.shape[0]):
            hw = in_hw if pos == 0 else (in_hw + stage.stride - 1) // stage.stride
            for c, choice in enumerate(choices):
                spec = layer_block(space, i, pos, choice, in_hw=hw)
                arr[pos, c], elems[pos, c] = ms(spec.key), block_input_melems(spec)
                wts[pos, c] = block_weight_melems(spec)
        stages.append(arr)
        melems.append(elems)
        weights.append(wts)
    return stages, fixed, melems, fixed_melems, weights[-1]


def _calibrated(
    cal: Calibration,
    resolution: int,
    stages: list[np.ndarray],
    fixed: float,
    melems: list[np.ndarray],
    fixed_melems: float,
    final_weights: np.ndarray,
) -> tuple[list[np.ndarray], float]:
    """The calibration folded into the arrays: every cell and the fixed term become calibrated ms (the final stage's
    cells with the cost of their weights)."""
    slope, offset = cal.coef(resolution)
    c, last = cal.ms_per_boundary_melem, len(stages) - 1
    cells = [slope * s + c * e for s, e in zip(stages, melems)]
    cells[last] = cells[last] + cal.ms_per_final_stage_mweight * final_weights
    return cells, slope * fixed + offset + c * fixed_melems


def choice_latency_ms(table: LatencyTable, space: SpaceSpec, resolution: int) -> ChoiceLatency:
    """Calibrated per-stage choice-latency arrays at `resolution` (for differentiable expected latency)."""
    _check_space(table, space)
    if resolution not in space.resolutions:
        raise HwnasError(f"resolution {resolution} not in space {space.name} ({list(space.resolutions)})")
    stages, fixed = _calibrated(
        Calibration.from_meta(table.meta.get("calibration")),
        resolution,
        *_raw_arrays(table, space, resolution, strict=True),
    )
    return ChoiceLatency(tuple(stages), fixed)


class LatencyPredictor:
    """Calibrated latency of any arch of `space` from `table`; `predict_many` handles a population in one gather."""

    def __init__(self, table: LatencyTable, space: SpaceSpec) -> None:
        _check_space(table, space)
        self.table = table
        self.space = space
        self.calibration = Calibration.from_meta(table.meta.get("calibration"))
        self.resolutions = tuple(r for r in space.resolutions if not table.resolutions or r in table.resolutions)
        self._res_index = {r: i for i, r in enumerate(space.resolutions)}
        n_stages = len(space.stages)
        self._depth = max(max(s.depths) for s in space.stages)
        self._n_choices = max(len(layer_choices(s)) for s in space.stages)
        self._choice_index = [{c: j for j, c in enumerate(layer_choices(s))} for s in space.stages]
        # [resolution, stage, position, choice + 1 "absent" column of zeros]; NaN where the table has no row.
        self._grid = np.zeros((len(space.resolutions), n_stages, self._depth, self._n_choices + 1))
        self._fixed = np.full(len(space.resolutions), np.nan)
        for r, res in enumerate(space.resolutions):
            stages, fixed = _calibrated(self.calibration, res, *_raw_arrays(table, space, res, strict=False))
            self._grid[r, :, :, : self._n_choices] = np.nan
            for s, arr in enumerate(stages):
                self._grid[r, s, : arr.shape[0], : arr.shape[1]] = arr
            self._fixed[r] = fixed
        self._flat = self._grid.ravel()
        self._depths = [frozenset(s.depths) for s in space.stages]
        # int-keyed lookups: hashing a LayerChoice dataclass runs Python code, an int tuple does not
        self._choice_of = [{(c.kernel, c.expand): j for j, c in enumerate(layer_choices(s))} for s in space.stages]
        width = self._n_choices + 1
        self._offsets = (np.arange(n_stages * self._depth) * width)[None, :]
        self._res_stride = n_stages * self._depth * width

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        """Integer codes, one row per arch: [resolution index, then per (stage, position) the choice index in
        `layer_choices(stage)` order, or `n_choices` where the stage is shallower]. Search code can keep these rows with
        its population and call `predict_codes`, which is pure numpy."""
        n_stages, depth, absent = len(self.space.stages), self._depth, self._n_choices
        rows = []
        for arch in archs:  # plain Python lists, converted once: per-row numpy assignment costs more than the lookups
            try:
                row = [self._res_index[arch.resolution]]
                if len(arch.stages) != n_stages:
                    raise KeyError(arch)
                for s, layers in enumerate(arch.stages):
                    if len(layers) not in self._depths[s]:
                        raise KeyError(arch)
                    choice_of = self._choice_of[s]
                    row += [choice_of[(layer.kernel, layer.expand)] for layer in layers]
                    row += [absent] * (depth - len(layers))
            except KeyError:
                check_arch(self.space, arch)  # raises the usual "not in space" message
                raise AssertionError(f"arch {arch} passed check_arch but could not be encoded") from None
            rows.append(row)
        return np.array(rows, dtype=np.intp).reshape(len(rows), 1 + n_stages * depth)

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        """Calibrated ms for rows of `encode` — one gather and one row sum, no Python loop."""
        flat = codes[:, :1] * self._res_stride + self._offsets + codes[:, 1:]
        return self._fixed[codes[:, 0]] + self._flat[flat].sum(axis=1)

    def predict_many(self, archs: Sequence[Arch]) -> np.ndarray:
        """Calibrated ms for each arch, as a float64 array (encode + `predict_codes`)."""
        if len(archs) == 0:
            return np.empty(0)
        out = self.predict_codes(self.encode(archs))
        bad = np.flatnonzero(~np.isfinite(out))
        if len(bad):
            raw_sum_ms(self.table, self.space, archs[int(bad[0])])  # raises naming the missing key
            raise AssertionError("non-finite prediction without a missing row")
        return out

    def predict(self, arch: Arch) -> float:
        return float(self.predict_many([arch])[0])

    def raw_ms(self, arch: Arch) -> float:
        return raw_sum_ms(self.table, self.space, arch)


_PREDICTORS: weakref.WeakKeyDictionary[LatencyTable, dict[str, LatencyPredictor]] = weakref.WeakKeyDictionary()


def predict_ms(table: LatencyTable, space: SpaceSpec, arch: Arch) -> float:
    """Calibrated latency of one arch (the predictor for (table, space) is built once and reused)."""
    per_table = _PREDICTORS.setdefault(table, {})
    key = space_hash(space)
    if key not in per_table:
        per_table[key] = LatencyPredictor(table, space)
    return per_table[key].predict(arch)


def latency_range_ms(predictor: LatencyPredictor) -> tuple[float, float]:
    """Exact smallest and largest predicted latency over the space (over the table's resolutions).

    Latency is additive over layers, so per stage and depth the extreme is the sum of per-position extremes; in this space
    that is the smallest arch at its smallest resolution and the largest at its largest.
    """
    space = predictor.space
    lows, highs = [], []
    for res in predictor.resolutions:
        r = predictor._res_index[res]
        low = high = float(predictor._fixed[r])
        for s, stage in enumerate(space.stages):
            grid = predictor._grid[r, s, :, : len(layer_choices(stage))]
            best = grid.min(axis=1).cumsum()  # NaN (missing row) propagates
            worst = grid.max(axis=1).cumsum()
            low += min(float(best[d - 1]) for d in stage.depths)
            high += max(float(worst[d - 1]) for d in stage.depths)
        lows.append(low)
        highs.append(high)
    if not lows or not all(np.isfinite(lows + highs)):
        raise HwnasError(
            f"LUT {predictor.table.source} does not cover space {space.name} at "
            f"{list(predictor.resolutions)}; {predictor.table.fix_hint()}"
        )
    return min(lows), max(highs)
