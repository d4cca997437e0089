"""Evolution on an accuracy predictor, checked by measurement (OFA's recipe, with the predictor's quality on record).

1. measure `measured - top_k` random feasible archs; 2. fit the predictor on them (Kendall τ on a held-out share);
3. evolve on the predictor (population 100 × 500 generations: tens of thousands of predicted candidates in a second);
4. measure the `top_k` best predicted candidates; the best *measured* feasible arch wins. The measured count equals
`measured`, so the result is comparable with random search at the same evaluation budget.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from hwnas.search.evolution import EvolutionConfig, evolve, feasible_children
from hwnas.search.genome import genome_of
from hwnas.search.latency_model import GeneLatency, check_budget
from hwnas.search.predictor import PredictorConfig, fit_predictor
from hwnas.search.result import Evaluations, ScoreFn, SearchResult, best_result
from hwnas.space import SpaceSpec

__all__ = ["predicted_evolution"]


def predicted_evolution(
    space: SpaceSpec,
    score_fn: ScoreFn,
    latency_fn: GeneLatency,
    *,
    budget_ms: float,
    measured: int,
    kind: Literal["ridge", "mlp"],
    rng: np.random.Generator,
    top_k: int | None = None,
    evolution: EvolutionConfig = EvolutionConfig(),
) -> tuple[SearchResult, dict[str, float | int | str]]:
    start = time.perf_counter()
    genome = genome_of(space)
    check_budget(latency_fn, budget_ms)
    k = top_k if top_k is not None else max(1, measured // 5)
    n_fit = max(4, measured - k)
    evals = Evaluations(genome, score_fn, max_evaluations=n_fit + k)
    fit_genes = feasible_children(
        lambda i, r: genome.sample(i.size, r), latency_fn, n_fit, rng, budget_ms=budget_ms, retries=10
    )
    evals.score(fit_genes)
    genes, scores = evals.arrays()
    predictor = fit_predictor(genome, genes, scores, cfg=PredictorConfig(kind=kind), rng=rng)
    found = evolve(space, predictor, latency_fn, budget_ms=budget_ms, cfg=evolution, rng=rng)
    order = np.argsort(-found.scores, kind="stable")
    seen = set(genome.keys(genes))
    picks: list[int] = []
    for i, key in zip(order, genome.keys(found.genes[order])):
        if len(picks) >= k:
            break
        if key not in seen and found.latency_ms[i] <= budget_ms:
            picks.append(i)
            seen.add(key)
    if picks:
        evals.score(found.genes[picks])
    info: dict[str, float | int | str] = {
        "predictor": kind,
        "tau": predictor.tau,
        "fit_pairs": int(genes.shape[0]),
        "holdout_pairs": predictor.n_holdout,
        "predicted_candidates": found.evaluated,
        "measured_top_k": len(picks),
        "evolution_seconds": round(found.seconds, 3),
    }
    result = best_result("evolution+predictor", evals, latency_fn, budget_ms=budget_ms, started=start, notes=dict(info))
    return result, info
