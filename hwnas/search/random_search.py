"""Random search: the strong baseline (Li & Talwalkar, 2019; Yu et al., 2020) at the same evaluation count.

Candidates are drawn uniformly from the space, restricted to the budget the same way evolution's are (bounded resampling,
then repair), so the comparison isolates what evolution's selection adds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.evolution import feasible_children
from hwnas.search.genome import genome_of
from hwnas.search.latency_model import GeneLatency, check_budget
from hwnas.search.result import Evaluations, ScoreFn, SearchResult, best_result
from hwnas.space import SpaceSpec

__all__ = ["RandomConfig", "random_search"]


@dataclass(frozen=True, slots=True)
class RandomConfig:
    evaluations: int = 100
    batch: int = 100  # candidates scored per score_fn call
    retries: int = 10
    max_rounds: int = 1000  # bound on batches when the space has fewer distinct feasible archs than `evaluations`

    def __post_init__(self) -> None:
        if self.evaluations < 1 or self.batch < 1 or self.retries < 0 or self.max_rounds < 1:
            raise HwnasError("random search needs evaluations >= 1, batch >= 1, retries >= 0, max_rounds >= 1")


def random_search(
    space: SpaceSpec,
    score_fn: ScoreFn,
    latency_fn: GeneLatency,
    *,
    budget_ms: float,
    cfg: RandomConfig,
    rng: np.random.Generator,
) -> SearchResult:
    """Score `cfg.evaluations` distinct uniformly sampled archs that fit `budget_ms`; return the best."""
    start = time.perf_counter()
    genome = genome_of(space)
    check_budget(latency_fn, budget_ms)
    evals = Evaluations(genome, score_fn, max_evaluations=cfg.evaluations)
    for _ in range(cfg.max_rounds):
        if evals.exhausted:
            break
        n = min(cfg.batch, cfg.evaluations - evals.count)
        evals.score(
            feasible_children(
                lambda i, r: genome.sample(i.size, r), latency_fn, n, rng, budget_ms=budget_ms, retries=cfg.retries
            )
        )
    return best_result(
        "random", evals, latency_fn, budget_ms=budget_ms, started=start, notes={"score_calls": evals.calls}
    )
