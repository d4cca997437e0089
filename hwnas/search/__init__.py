"""Search under a latency budget: strategies, accuracy evaluation and prediction, Pareto bookkeeping.

Strategies are pure functions ``strategy(space, score_fn, latency_fn, *, budget_ms, cfg, rng) -> SearchResult`` over gene
matrices (see `genome.py`); `score_fn` is measured accuracy (`SupernetScorer`) or a fitted `AccuracyPredictor`, and
`latency_fn` is a `GeneLatency` (the calibrated LUT predictor laid out per layer slot).
"""

from hwnas.search.differentiable import differentiable_search, read_run_arch
from hwnas.search.evolution import EvolutionConfig, evolve
from hwnas.search.genome import Genome, genome_of
from hwnas.search.latency_model import GeneLatency, check_budget, gene_latency_from_block_ms, gene_latency_from_lut
from hwnas.search.predictor import AccuracyPredictor, PredictorConfig, fit_predictor, kendall_tau, one_hot
from hwnas.search.random_search import RandomConfig, random_search
from hwnas.search.result import ScoreFn, SearchResult, pareto_indices
from hwnas.search.rl import RLConfig, mnas_reward, rl_search
from hwnas.search.scale import ScaleConfig, compound_scale, scale_to_budget

__all__ = [
    "AccuracyPredictor",
    "EvolutionConfig",
    "GeneLatency",
    "Genome",
    "PredictorConfig",
    "RLConfig",
    "RandomConfig",
    "ScaleConfig",
    "ScoreFn",
    "SearchResult",
    "check_budget",
    "compound_scale",
    "differentiable_search",
    "evolve",
    "fit_predictor",
    "gene_latency_from_block_ms",
    "gene_latency_from_lut",
    "genome_of",
    "kendall_tau",
    "mnas_reward",
    "one_hot",
    "pareto_indices",
    "random_search",
    "read_run_arch",
    "rl_search",
    "scale_to_budget",
]
