"""One search per latency budget with a named strategy: what `hwnas search` and `hwnas quickstart` both run.

`SearchPlan` holds the strategy and its effort; `search_budgets` runs it at each budget on one scorer (so measured
accuracies are shared across budgets through the scorer's cache) with a seeded generator per budget, and
`search_context` is the run / table identity every search.json records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.differentiable import differentiable_search, read_run_arch
from hwnas.search.evolution import EvolutionConfig, evolve
from hwnas.search.latency_model import GeneLatency
from hwnas.search.predicted import predicted_evolution
from hwnas.search.random_search import RandomConfig, random_search
from hwnas.search.result import ScoreFn, SearchResult
from hwnas.search.rl import RLConfig, rl_search
from hwnas.space import SpaceSpec, space_hash

__all__ = ["SEARCH_STRATEGIES", "SearchPlan", "search_budgets", "search_context"]

SEARCH_STRATEGIES = ("evolution", "random", "rl", "differentiable")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """Which strategy runs at every budget, and how much it may score (`evaluations` distinct candidates)."""

    strategy: str = "evolution"
    evaluations: int = 100
    population: int = 16
    generations: int = 10_000
    fitted_predictor: Literal["none", "ridge", "mlp"] = "none"  # evolution: evolve on a predictor fitted on scores
    seed: int = 0
    run_dir: Path | None = None  # differentiable: the latency-aware run whose RUN/arch.json is repaired to the budget
    progress: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in SEARCH_STRATEGIES:
            raise HwnasError(f"unknown strategy {self.strategy!r}; available: {', '.join(SEARCH_STRATEGIES)}")
        if self.strategy == "differentiable" and self.run_dir is None:
            raise HwnasError("the differentiable strategy needs the latency-aware run that holds arch.json")


def _one(
    space: SpaceSpec, scorer: ScoreFn, latency: GeneLatency, budget: float, plan: SearchPlan, rng: np.random.Generator
) -> tuple[SearchResult, dict[str, Any] | None]:
    if plan.strategy == "evolution" and plan.fitted_predictor != "none":
        res, info = predicted_evolution(
            space, scorer, latency, budget_ms=budget, measured=plan.evaluations, kind=plan.fitted_predictor, rng=rng
        )
        return res, dict(info)
    if plan.strategy == "evolution":
        cfg = EvolutionConfig(
            population=plan.population,
            generations=plan.generations,
            max_evaluations=plan.evaluations,
            progress=plan.progress,
        )
        return evolve(space, scorer, latency, budget_ms=budget, cfg=cfg, rng=rng), None
    if plan.strategy == "random":
        cfg_random = RandomConfig(evaluations=plan.evaluations)
        return random_search(space, scorer, latency, budget_ms=budget, cfg=cfg_random, rng=rng), None
    if plan.strategy == "rl":
        return rl_search(
            space, scorer, latency, budget_ms=budget, cfg=RLConfig(evaluations=plan.evaluations), rng=rng
        ), None
    assert plan.run_dir is not None
    arch = read_run_arch(plan.run_dir, space)
    return differentiable_search(space, scorer, latency, arch=arch, budget_ms=budget), None


def search_budgets(
    space: SpaceSpec, scorer: ScoreFn, latency: GeneLatency, budgets: Sequence[float], *, plan: SearchPlan
) -> tuple[list[SearchResult], dict[str, Any]]:
    """The plan's search at each budget (generator seeded by (seed, budget index)); returns the results and, per
    budget, what a fitted-predictor search reports about its predictor."""
    results, extra = [], {}
    for i, budget in enumerate(budgets):
        res, info = _one(space, scorer, latency, budget, plan, np.random.default_rng([plan.seed, i]))
        if info is not None:
            extra[str(budget)] = info
        log.info(
            "budget %g ms: %s  %.4f ms  acc %.4f  (%d evaluated, %.1f s)",
            budget,
            res.arch,
            res.predicted_ms,
            res.accuracy,
            res.evaluated,
            res.seconds,
        )
        results.append(res)
    return results, extra


def search_context(
    *,
    seed: int,
    run: Path,
    lut: Path,
    device: str,
    space: SpaceSpec,
    torch_device: str | None = None,
    world_size: int = 1,
) -> dict[str, Any]:
    """The identity every search.json records: seed, run folder, table, the table's device and space, and where the
    accuracies were computed (`torch_device`, None when no torch model scored; `world_size`, the torchrun ranks that
    shared the scoring)."""
    return {
        "seed": seed,
        "run": str(run),
        "lut": str(lut),
        "device": device,
        "space": space.name,
        "space_hash": space_hash(space),
        "torch_device": torch_device,
        "world_size": world_size,
    }
