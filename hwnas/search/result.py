"""What a search returns: the winner, every evaluated candidate, and the Pareto set (latency ↓, accuracy ↑).

Candidates stay as gene rows plus numpy columns until written out, so a predictor-driven search over 50k candidates does
not build 50k `Arch` objects; only the winner and the Pareto set are decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwnas.search.genome import Genome
from hwnas.space import Arch

__all__ = ["ScoreFn", "SearchResult", "pareto_indices", "Evaluations", "best_result"]

# Score and latency callables take a gene matrix (n, G) and return one float per row (see genome.py for the layout).
ScoreFn = Callable[[np.ndarray], np.ndarray]


def pareto_indices(latency_ms: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (no other point is at least as fast and strictly more accurate), by latency."""
    order = np.lexsort((-score, latency_ms))
    keep = []
    best = -np.inf
    for i in order:
        if score[i] > best:
            keep.append(i)
            best = score[i]
    return np.array(keep, dtype=np.int64)


class Evaluations:
    """Score bookkeeping shared by all strategies: dedupe by arch, one batched `score_fn` call per round, a hard cap.

    A mutable helper local to one search call (never shared across threads or stored globally).
    """

    def __init__(self, genome: Genome, score_fn: ScoreFn, *, max_evaluations: int | None) -> None:
        self.genome = genome
        self.score_fn = score_fn
        self.max_evaluations = max_evaluations
        self.index: dict[tuple[int, int], int] = {}
        self.blocks: list[np.ndarray] = []  # gene rows in scoring order, one block per score_fn call
        self.scores: list[float] = []
        self.calls = 0

    @property
    def count(self) -> int:
        return len(self.scores)

    @property
    def exhausted(self) -> bool:
        return self.max_evaluations is not None and self.count >= self.max_evaluations

    def score(self, genes: np.ndarray) -> np.ndarray:
        """Scores of `genes`; unseen archs are scored in one call (up to the cap, later rows get -inf)."""
        keys = self.genome.keys(genes)
        index = self.index
        new_rows: list[int] = []
        pending: set[tuple[int, int]] = set()
        room = len(keys) if self.max_evaluations is None else self.max_evaluations - self.count
        for r, k in enumerate(keys):
            if k in index or k in pending or len(new_rows) >= room:
                continue
            pending.add(k)
            new_rows.append(r)
        if new_rows:
            block = genes[new_rows]
            fresh = np.asarray(self.score_fn(block), dtype=np.float64)
            self.calls += 1
            assert fresh.shape == (len(new_rows),), "score_fn must return one score per row"
            base = len(self.scores)
            for i, r in enumerate(new_rows):
                index[keys[r]] = base + i
            self.scores.extend(fresh.tolist())
            self.blocks.append(block)
        scores = self.scores
        return np.array([scores[index[k]] if k in index else -np.inf for k in keys])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.blocks:
            return np.zeros((0, self.genome.n_genes), dtype=np.int64), np.zeros(0)
        return np.concatenate(self.blocks), np.array(self.scores)


@dataclass(frozen=True, eq=False)
class SearchResult:
    strategy: str
    budget_ms: float
    arch: Arch
    predicted_ms: float
    accuracy: float
    evaluated: int
    seconds: float
    genome: Genome
    genes: np.ndarray  # (n, G) every evaluated candidate
    latency_ms: np.ndarray  # (n,)
    scores: np.ndarray  # (n,) what the strategy maximized (measured or predicted accuracy)
    notes: dict[str, float | int | str] = field(default_factory=dict)

    def feasible(self) -> np.ndarray:
        return self.latency_ms <= self.budget_ms

    def pareto(self) -> list[tuple[Arch, float, float]]:
        """(arch, predicted_ms, accuracy) of the Pareto set of every evaluated candidate, fastest first."""
        idx = pareto_indices(self.latency_ms, self.scores)
        archs = self.genome.decode(self.genes[idx]) if idx.size else []
        return [(a, float(self.latency_ms[i]), float(self.scores[i])) for a, i in zip(archs, idx)]

    def summary(self) -> dict[str, object]:
        """The `--json` contract: arch, predicted_ms, accuracy, budget_ms, evaluated, seconds."""
        return {
            "arch": str(self.arch),
            "predicted_ms": round(self.predicted_ms, 6),
            "accuracy": round(self.accuracy, 6),
            "budget_ms": self.budget_ms,
            "evaluated": self.evaluated,
            "seconds": round(self.seconds, 3),
        }


def best_result(
    strategy: str,
    evals: Evaluations,
    latency_fn: ScoreFn,
    *,
    budget_ms: float,
    started: float,
    notes: dict[str, float | int | str],
) -> SearchResult:
    """The search's result: the best-scoring evaluated candidate within the budget, and every evaluated candidate.

    `started` is the strategy's `time.perf_counter()` at its start.
    """
    genes, scores = evals.arrays()
    lat = latency_fn(genes)
    ok = np.flatnonzero(lat <= budget_ms)
    assert ok.size, "a strategy must evaluate at least one feasible candidate"
    best = ok[int(np.argmax(scores[ok]))]
    return SearchResult(
        strategy=strategy,
        budget_ms=budget_ms,
        arch=evals.genome.decode(genes[best][None, :])[0],
        predicted_ms=float(lat[best]),
        accuracy=float(scores[best]),
        evaluated=evals.count,
        seconds=time.perf_counter() - started,
        genome=evals.genome,
        genes=genes,
        latency_ms=lat,
        scores=scores,
        notes=notes,
    )
