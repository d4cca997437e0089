"""Predicted latency of whole populations at once, and budget repair.

A LUT predictor is additive: fixed blocks (stem, first block, head) plus one row per kept layer, then a calibration
``a·sum + b``. `GeneLatency` lays those rows out as a dense ``[resolution, layer slot, choice]`` array, so the latency of
100 candidates is one gather and one sum (microseconds), the smallest/largest achievable latency is exact, and an
over-budget candidate can be repaired by shrinking its slowest layer — all without building a single `Arch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.genome import Genome, genome_of
from hwnas.space import BlockSpec, SpaceSpec, first_block, head_block, layer_block, stage_input_hw, stem_block

if TYPE_CHECKING:
    from hwnas.latency.lut import LatencyTable

__all__ = ["GeneLatency", "gene_latency_from_block_ms", "gene_latency_from_lut", "check_budget"]


@dataclass(frozen=True, eq=False)
class GeneLatency:
    """Calibrated additive latency model over genes. Call it on a gene matrix to get predicted ms per row."""

    genome: Genome
    fixed_ms: np.ndarray  # (R,) stem + first block + head per resolution index
    slot_ms: np.ndarray  # (R, L, C) raw ms of each choice at each layer slot (inf where a stage has fewer choices)
    scale: float = 1.0
    offset_ms: float = 0.0

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        return self.scale * self.raw_ms(genes) + self.offset_ms

    def raw_ms(self, genes: np.ndarray) -> np.ndarray:
        return self.fixed_ms[genes[:, 0]] + (self.contributions(genes)).sum(axis=1)

    def contributions(self, genes: np.ndarray) -> np.ndarray:
        """(n, L) raw ms each layer slot adds (0 for inactive slots)."""
        g = self.genome
        res = genes[:, 0][:, None]
        per = self.slot_ms[res, g.slot_index, genes[:, g.slot_cols]]
        return np.where(g.active(genes), per, 0.0)

    # ---- extremes -----------------------------------------------------------------------------------------------------
    def _extreme(self, pick: Callable[..., np.ndarray]) -> tuple[float, np.ndarray]:
        """Exact min (or max) over the space: per resolution, per stage the best depth of per-slot best choices."""
        g = self.genome
        finite = np.where(np.isfinite(self.slot_ms), self.slot_ms, np.nan)
        covered = np.flatnonzero(np.isfinite(self.fixed_ms))  # resolutions the table has rows for
        finite[~np.isfinite(self.fixed_ms)] = 0.0
        best_choice = np.nanargmin(finite, axis=2) if pick is np.argmin else np.nanargmax(finite, axis=2)  # (R, L)
        best_ms = np.take_along_axis(self.slot_ms, best_choice[:, :, None], axis=2)[:, :, 0]
        best_total, best_genes = None, None
        for r in covered:
            genes = np.zeros(g.n_genes, dtype=np.int64)
            genes[0] = r
            genes[g.slot_cols] = best_choice[r]
            total = float(self.fixed_ms[r])
            for s, stage in enumerate(g.space.stages):
                cum = np.cumsum(best_ms[r, g.slot_stage == s])
                options = np.array([cum[d - 1] for d in stage.depths])
                d_idx = int(pick(options))
                genes[1 + s] = d_idx
                total += float(options[d_idx])
            if best_total is None or (total < best_total if pick is np.argmin else total > best_total):
                best_total, best_genes = total, genes
        assert best_total is not None and best_genes is not None
        # report through __call__ so "budget >= min_ms" means exactly "this arch passes the feasibility test"
        return float(self(best_genes[None, :])[0]), best_genes

    def min_ms(self) -> tuple[float, np.ndarray]:
        """Smallest achievable predicted latency and the genes of an arch achieving it."""
        return self._extreme(np.argmin)

    def max_ms(self) -> tuple[float, np.ndarray]:
        return self._extreme(np.argmax)

    # ---- repair ---------------------------------------------------------------------------------------------------------
    def repair(self, genes: np.ndarray, *, budget_ms: float) -> np.ndarray:
        """Make every row fit `budget_ms` by repeatedly shrinking its slowest layer to the next cheaper choice.

        When no kept layer can shrink, the most expensive removable layer is dropped (depth − 1); then the resolution
        goes down. Each step strictly lowers latency, so the loop is bounded by the number of possible moves; a budget
        below `min_ms()` must be rejected by `check_budget` first.
        """
        g = self.genome
        out = np.array(genes, copy=True)
        per_res = g.n_slots * int(self.slot_ms.shape[2]) + int(g.cards[1 : 1 + g.n_stages].sum()) + 1
        max_steps = per_res * int(g.cards[0])
        uncovered = ~np.isfinite(self.fixed_ms[out[:, 0]])
        if uncovered.any():  # a resolution the table has no rows for: move to the nearest covered one
            covered = np.flatnonzero(np.isfinite(self.fixed_ms))
            below = covered[None, :] <= out[uncovered, 0][:, None]
            nearest = np.where(below.any(axis=1), covered[np.maximum(below.sum(axis=1) - 1, 0)], covered[0])
            out[uncovered, 0] = nearest
        rows = np.flatnonzero(self(out) > budget_ms)
        for _ in range(max_steps):
            if rows.size == 0:
                return out
            sub = out[rows]
            self._shrink_once(sub)
            out[rows] = sub
            rows = rows[self(sub) > budget_ms]
        raise AssertionError(f"repair did not converge in {max_steps} steps (budget {budget_ms} ms)")

    def _shrink_once(self, sub: np.ndarray) -> None:
        g = self.genome
        n = sub.shape[0]
        res = sub[:, 0]
        slots = sub[:, g.slot_cols]
        cur = self.contributions(sub)  # (n, L)
        table = self.slot_ms[res]  # (n, L, C)
        cheaper = np.where(table < cur[:, :, None] - 1e-12, table, -np.inf)
        next_choice = cheaper.argmax(axis=2)  # most expensive of the cheaper choices
        can = np.isfinite(cheaper.max(axis=2)) & g.active(sub)
        slot_pick = np.where(can, cur, -np.inf).argmax(axis=1)
        has = can[np.arange(n), slot_pick]
        slots[has, slot_pick[has]] = next_choice[has, slot_pick[has]]
        sub[:, g.slot_cols] = slots
        # rows where every kept layer is already at its cheapest choice: drop a layer, else lower the resolution
        for r in np.flatnonzero(~has):
            depth_idx = sub[r, 1 : 1 + g.n_stages]
            removable = [s for s in range(g.n_stages) if depth_idx[s] > 0]
            if removable:
                last_ms = [cur[r, g.slot_stage == s][g.depths[s, depth_idx[s]] - 1] for s in removable]
                s = removable[int(np.argmax(last_ms))]
                sub[r, 1 + s] -= 1
            elif sub[r, 0] > 0:
                sub[r, 0] -= 1


def gene_latency_from_block_ms(
    space: SpaceSpec, block_ms: Callable[[BlockSpec], float], *, scale: float = 1.0, offset_ms: float = 0.0
) -> GeneLatency:
    """Lay out an additive per-block latency model (a LUT row lookup, FLOPs, ...) as gene tables."""
    g = genome_of(space)
    n_res = len(space.resolutions)
    n_choice = int(max(len(c) for c in g.choices))
    fixed = np.zeros(n_res)
    slot = np.full((n_res, g.n_slots, n_choice), np.inf)
    for r, res in enumerate(space.resolutions):
        fixed[r] = (
            block_ms(stem_block(space, res)) + block_ms(first_block(space, res)) + block_ms(head_block(space, res))
        )
        in_hws = stage_input_hw(space, res)
        for slot_idx, (s, j) in enumerate(zip(g.slot_stage, g.slot_pos)):
            stride = space.stages[s].stride
            in_hw = in_hws[s] if j == 0 else (in_hws[s] + stride - 1) // stride
            for c, choice in enumerate(g.choices[s]):
                slot[r, slot_idx, c] = block_ms(layer_block(space, int(s), int(j), choice, in_hw=in_hw))
    if scale <= 0:
        raise HwnasError(f"latency calibration scale must be positive, got {scale}")
    return GeneLatency(g, fixed, slot, float(scale), float(offset_ms))


def gene_latency_from_lut(table: LatencyTable, space: SpaceSpec) -> GeneLatency:
    """The calibrated LUT predictor of the latency layer (`choice_latency_ms`), laid out over genes.

    Exactly `LatencyPredictor.predict` per arch (tested); resolutions the table has no rows for predict +inf, so they are
    never feasible.
    """
    from hwnas.latency.predictor import choice_latency_ms

    g = genome_of(space)
    n_choice = int(max(len(c) for c in g.choices))
    fixed = np.full(len(space.resolutions), np.inf)
    slot = np.full((len(space.resolutions), g.n_slots, n_choice), np.inf)
    covered = 0
    for r, res in enumerate(space.resolutions):
        if table.resolutions and res not in table.resolutions:
            continue
        arrays = choice_latency_ms(table, space, res)
        fixed[r] = arrays.fixed_ms
        for slot_idx, (s, j) in enumerate(zip(g.slot_stage, g.slot_pos)):
            row = arrays.stage_ms[s][j]
            slot[r, slot_idx, : row.size] = row
        covered += 1
    if covered == 0:
        raise HwnasError(f"LUT {table.source} has no rows for any resolution of space {space.name}; {table.fix_hint()}")
    return GeneLatency(g, fixed, slot)


def check_budget(latency: GeneLatency, budget_ms: float, *, where: str = "the latency table") -> None:
    """Fail fast, naming the smallest achievable latency, when no arch of the space can fit `budget_ms`."""
    min_ms, genes = latency.min_ms()
    if budget_ms < min_ms:
        arch = latency.genome.decode(genes[None, :])[0]
        raise HwnasError(
            f"budget {budget_ms:g} ms is infeasible: the smallest achievable predicted latency is {min_ms:.4f} ms "
            f"({arch}) with {where}; use --budget-ms {min_ms:.4f} or more"
        )
