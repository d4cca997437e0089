"""Archs as rows of small integers, so a whole population is one numpy matrix.

Search strategies mutate, cross over, predict and deduplicate hundreds of candidates per generation. Doing that on `Arch`
objects costs tens of microseconds per candidate in Python (OFA's dict-based EvolutionFinder spends seconds there); on an
int matrix it is a handful of numpy calls per generation. `Arch` stays the one public encoding: genes are decoded back to
`Arch` only at the boundary (cache keys of expensive evaluations, results, files).

Gene layout for a space with S stages (column order):
    0                 resolution index into ``space.resolutions``
    1 .. S            depth index into ``stage.depths`` per stage
    S+1 ..            one slot per possible layer (``max(stage.depths)`` per stage, stage after stage): the index of the
                      layer's (kernel, expand) in ``layer_choices(stage)``. Slots beyond a stage's depth are *inactive*: they
                      are carried along (so a depth mutation can re-activate them, as in OFA) but do not belong to the arch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hwnas.errors import HwnasError
from hwnas.space import Arch, LayerChoice, SpaceSpec, check_arch, layer_choices

__all__ = ["Genome", "genome_of"]


@dataclass(frozen=True, eq=False)
class Genome:
    """The gene layout of one space plus vectorized sample / mutate / crossover / decode. Build with `genome_of(space)`."""

    space: SpaceSpec
    cards: np.ndarray  # (G,) number of values each gene can take
    slot_stage: np.ndarray  # (L,) stage index of each layer slot
    slot_pos: np.ndarray  # (L,) position of each slot inside its stage
    choices: tuple[tuple[LayerChoice, ...], ...]  # per stage, layer_choices(stage)
    depths: np.ndarray  # (S, Dmax) depth value for each depth index (padded with the last)
    slot_active: np.ndarray  # (L, Dmax) whether slot l is kept when its stage has depth index d
    key_radix: np.ndarray  # (G,) mixed-radix place values for `keys`, restarting at `key_split`
    key_split: int
    slot_index: np.ndarray  # (1, L) arange, kept to save an allocation per call on the hot path

    @property
    def n_stages(self) -> int:
        return len(self.space.stages)

    @property
    def n_slots(self) -> int:
        return int(self.slot_stage.size)

    @property
    def n_genes(self) -> int:
        return int(self.cards.size)

    @property
    def slot_cols(self) -> slice:
        return slice(1 + self.n_stages, self.n_genes)

    # ---- membership of layer slots ---------------------------------------------------------------------------------
    def stage_depths(self, genes: np.ndarray) -> np.ndarray:
        """(n, S) depth of every stage."""
        idx = genes[:, 1 : 1 + self.n_stages]
        return self.depths[np.arange(self.n_stages)[None, :], idx]

    def active(self, genes: np.ndarray) -> np.ndarray:
        """(n, L) bool: which layer slots belong to the arch (slot position < its stage's depth)."""
        # one gather: the depth index of each slot's stage, then a lookup of "position < depth" per (slot, depth index)
        return self.slot_active[self.slot_index, genes[:, 1 + self.slot_stage]]

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        """Genes with inactive slots set to -1: two rows are the same arch iff their canonical rows are equal."""
        out = np.array(genes, dtype=np.int64, copy=True)
        slots = out[:, self.slot_cols]
        slots[~self.active(genes)] = -1
        out[:, self.slot_cols] = slots
        return out

    def keys(self, genes: np.ndarray) -> list[tuple[int, int]]:
        """Exact hashable identity of each row: the canonical genes as two mixed-radix integers (no Arch strings)."""
        canon = self.canonical(genes) + 1
        a = canon[:, : self.key_split] @ self.key_radix[: self.key_split]
        b = canon[:, self.key_split :] @ self.key_radix[self.key_split :]
        return list(zip(a.tolist(), b.tolist()))

    # ---- random operators (vectorized; randomness only from the given Generator) -----------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.random((n, self.n_genes)) * self.cards[None, :]).astype(np.int64)

    def mutate(self, genes: np.ndarray, rng: np.random.Generator, *, prob: float) -> np.ndarray:
        """Resample each gene independently with probability `prob` (OFA's mutation, as one numpy expression)."""
        fresh = self.sample(genes.shape[0], rng)
        return np.where(rng.random(genes.shape) < prob, fresh, genes)

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover: every gene from either parent with equal probability."""
        return np.where(rng.random(a.shape) < 0.5, a, b)

    # ---- conversion -------------------------------------------------------------------------------------------------
    def encode(self, archs: list[Arch]) -> np.ndarray:
        """Archs → genes (inactive slots get the first choice)."""
        space = self.space
        out = np.zeros((len(archs), self.n_genes), dtype=np.int64)
        for r, arch in enumerate(archs):
            check_arch(space, arch)
            out[r, 0] = space.resolutions.index(arch.resolution)
            col = 1 + self.n_stages
            for s, (layers, stage) in enumerate(zip(arch.stages, space.stages)):
                out[r, 1 + s] = stage.depths.index(len(layers))
                for j, layer in enumerate(layers):
                    out[r, col + j] = self.choices[s].index(layer)
                col += max(stage.depths)
        return out

    def decode(self, genes: np.ndarray) -> list[Arch]:
        """Genes → archs (inactive slots dropped)."""
        space = self.space
        depths = self.stage_depths(genes)
        out = []
        for r in range(genes.shape[0]):
            row = genes[r]
            col = 1 + self.n_stages
            stages = []
            for s, stage in enumerate(space.stages):
                stages.append(tuple(self.choices[s][int(row[col + j])] for j in range(int(depths[r, s]))))
                col += max(stage.depths)
            out.append(Arch(space.resolutions[int(row[0])], tuple(stages)))
        return out

    def check(self, genes: np.ndarray) -> np.ndarray:
        """Raise on rows outside the layout (internal invariant for genes coming from callers)."""
        if genes.ndim != 2 or genes.shape[1] != self.n_genes:
            raise HwnasError(
                f"genes must have shape (n, {self.n_genes}) for space {self.space.name}, got {genes.shape}"
            )
        if (genes < 0).any() or (genes >= self.cards[None, :]).any():
            raise HwnasError(f"genes out of range for space {self.space.name}")
        return genes


@functools.lru_cache(maxsize=32)
def genome_of(space: SpaceSpec) -> Genome:
    """The (cached) gene layout of `space`."""
    s_count = len(space.stages)
    choices = tuple(layer_choices(stage) for stage in space.stages)
    d_max = max(len(stage.depths) for stage in space.stages)
    depths = np.array([list(stage.depths) + [stage.depths[-1]] * (d_max - len(stage.depths)) for stage in space.stages])
    if any(list(stage.depths) != sorted(stage.depths) for stage in space.stages):
        raise HwnasError(f"space {space.name}: stage depths must be ascending")
    slot_stage = np.concatenate([np.full(max(st.depths), s) for s, st in enumerate(space.stages)])
    slot_pos = np.concatenate([np.arange(max(st.depths)) for st in space.stages])
    cards = np.array(
        [len(space.resolutions)] + [len(st.depths) for st in space.stages] + [len(choices[s]) for s in slot_stage],
        dtype=np.int64,
    )
    assert cards.size == 1 + s_count + slot_stage.size
    slot_active = slot_pos[:, None] < depths[slot_stage]
    radix, split = _radix(cards + 1)
    return Genome(
        space,
        cards,
        slot_stage,
        slot_pos,
        choices,
        depths,
        slot_active,
        radix,
        split,
        np.arange(slot_stage.size)[None, :],
    )


def _radix(base: np.ndarray) -> tuple[np.ndarray, int]:
    """Place values so each half of the genes packs exactly into an int64 (split where the product would overflow)."""
    radix = np.zeros(base.size, dtype=np.int64)
    place, split = 1, base.size
    for i, b in enumerate(base.tolist()):
        if place * b >= 2**62:
            if split != base.size:
                raise HwnasError("space too large for gene keys (more than 124 bits of decisions)")
            split, place = i, 1
        radix[i] = place
        place *= b
    return radix, split
