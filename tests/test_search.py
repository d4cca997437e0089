"""Search strategies on a real LatencyTable (synthetic rows) and synthetic scores: budgets, determinism, bounds."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from archs import TINY_ARCHS
from search_lut import synthetic_table

from hwnas.errors import HwnasError
from hwnas.latency.predictor import LatencyPredictor, latency_range_ms
from hwnas.search import (
    EvolutionConfig,
    RandomConfig,
    RLConfig,
    check_budget,
    evolve,
    fit_predictor,
    gene_latency_from_lut,
    genome_of,
    kendall_tau,
    one_hot,
    random_search,
    rl_search,
)
from hwnas.search.predictor import PredictorConfig
from hwnas.space import Arch, get_space, sample

SPACE = get_space("mbv3-tiny")
TABLE = synthetic_table(SPACE)
LATENCY = gene_latency_from_lut(TABLE, SPACE)
GENOME = genome_of(SPACE)
MIN_MS, MAX_MS = LATENCY.min_ms()[0], LATENCY.max_ms()[0]


def _score_fn(seed: int = 0):
    """A synthetic accuracy: additive over one-hot decisions (bigger choices tend to help) plus interactions."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=int(GENOME.cards.sum())) * 0.01 + 0.002

    def score(genes: np.ndarray) -> np.ndarray:
        x = one_hot(GENOME, genes)
        return 0.8 + x @ w + 0.002 * np.sin(x.sum(axis=1))

    return score


def _archs(n: int, seed: int = 0) -> list[Arch]:
    rng = random.Random(seed)
    return [sample(SPACE, rng) for _ in range(n)] + [Arch.parse(a) for a in TINY_ARCHS]


def test_genes_round_trip_and_keys_identify_archs() -> None:
    archs = _archs(200)
    genes = GENOME.encode(archs)
    assert [str(a) for a in GENOME.decode(genes)] == [str(a) for a in archs]
    keys = GENOME.keys(genes)
    assert len(set(keys)) == len({str(a) for a in archs})
    # inactive slots do not change identity
    noisy = genes.copy()
    noisy[:, GENOME.slot_cols] = np.where(GENOME.active(genes), genes[:, GENOME.slot_cols], 1)
    assert GENOME.keys(noisy) == keys


def test_gene_latency_equals_lut_predictor() -> None:
    archs = _archs(300, seed=1)
    expected = LatencyPredictor(TABLE, SPACE).predict_many(archs)
    np.testing.assert_allclose(LATENCY(GENOME.encode(archs)), expected, rtol=1e-12, atol=1e-12)
    lo, hi = latency_range_ms(LatencyPredictor(TABLE, SPACE))
    assert MIN_MS == pytest.approx(lo) and MAX_MS == pytest.approx(hi)


def test_infeasible_budget_errors_fast_naming_the_minimum() -> None:
    t0 = time.perf_counter()
    with pytest.raises(HwnasError, match=rf"smallest achievable predicted latency is {MIN_MS:.4f} ms"):
        evolve(
            SPACE, _score_fn(), LATENCY, budget_ms=MIN_MS * 0.99, cfg=EvolutionConfig(), rng=np.random.default_rng(0)
        )
    assert time.perf_counter() - t0 < 1.0


def test_repair_makes_everything_fit_and_only_shrinks() -> None:
    rng = np.random.default_rng(3)
    genes = GENOME.sample(500, rng)
    for budget in (MIN_MS, MIN_MS * 1.1, (MIN_MS + MAX_MS) / 2):
        fixed = LATENCY.repair(genes, budget_ms=budget)
        assert (LATENCY(fixed) <= budget + 1e-12).all()
        assert (LATENCY(fixed) <= LATENCY(genes) + 1e-12).all()
        untouched = LATENCY(genes) <= budget
        assert (fixed[untouched] == genes[untouched]).all()


@pytest.mark.parametrize("frac", [0.0, 0.05, 0.3, 0.7])
def test_evolution_winner_and_every_candidate_fit_the_budget(frac: float) -> None:
    budget = MIN_MS + frac * (MAX_MS - MIN_MS)
    cfg = EvolutionConfig(population=40, generations=30)
    res = evolve(SPACE, _score_fn(), LATENCY, budget_ms=budget, cfg=cfg, rng=np.random.default_rng(1))
    assert res.predicted_ms <= budget
    assert LatencyPredictor(TABLE, SPACE).predict(res.arch) == pytest.approx(res.predicted_ms)
    assert (res.latency_ms <= budget).all()
    assert res.evaluated == len(res.genes) == len(set(GENOME.keys(res.genes)))


def test_search_is_deterministic_for_a_seed() -> None:
    budget = MIN_MS + 0.3 * (MAX_MS - MIN_MS)
    cfg = EvolutionConfig(population=30, generations=20)
    runs = [
        evolve(SPACE, _score_fn(), LATENCY, budget_ms=budget, cfg=cfg, rng=np.random.default_rng(s)) for s in (7, 7, 8)
    ]
    assert str(runs[0].arch) == str(runs[1].arch)
    assert np.array_equal(runs[0].genes, runs[1].genes) and np.array_equal(runs[0].scores, runs[1].scores)
    assert not np.array_equal(runs[0].genes, runs[2].genes)
    rs = [
        random_search(
            SPACE,
            _score_fn(),
            LATENCY,
            budget_ms=budget,
            cfg=RandomConfig(evaluations=50),
            rng=np.random.default_rng(5),
        )
        for _ in range(2)
    ]
    assert np.array_equal(rs[0].genes, rs[1].genes)


def test_evolution_beats_random_at_equal_evaluations_and_caches() -> None:
    budget = MIN_MS + 0.25 * (MAX_MS - MIN_MS)
    calls: list[int] = []
    base = _score_fn(2)

    def counted(genes: np.ndarray) -> np.ndarray:
        calls.append(len(genes))
        return base(genes)

    cfg = EvolutionConfig(population=50, generations=1000, max_evaluations=1500)
    evo = evolve(SPACE, counted, LATENCY, budget_ms=budget, cfg=cfg, rng=np.random.default_rng(0))
    assert evo.evaluated == sum(calls) == 1500  # duplicates never reach score_fn
    assert len(calls) < 1500 / 10  # whole generations per call
    rnd = random_search(
        SPACE, base, LATENCY, budget_ms=budget, cfg=RandomConfig(evaluations=1500), rng=np.random.default_rng(0)
    )
    assert rnd.evaluated == 1500
    assert evo.accuracy > rnd.accuracy


def test_rl_controller_fits_budget_and_counts_evaluations() -> None:
    budget = MIN_MS + 0.2 * (MAX_MS - MIN_MS)
    res = rl_search(
        SPACE,
        _score_fn(),
        LATENCY,
        budget_ms=budget,
        cfg=RLConfig(evaluations=120, batch=12),
        rng=np.random.default_rng(0),
    )
    assert res.predicted_ms <= budget
    assert 120 <= res.evaluated <= 121
    assert res.notes["policy_updates"] >= 10


def test_predictor_reports_held_out_kendall_tau() -> None:
    rng = np.random.default_rng(0)
    genes = GENOME.sample(150, rng)
    y = _score_fn(3)(genes) + rng.normal(size=150) * 0.002
    for kind in ("ridge", "mlp"):
        pred = fit_predictor(GENOME, genes, y, cfg=PredictorConfig(kind=kind, epochs=150), rng=np.random.default_rng(1))
        assert pred.n_holdout == 30 and np.isfinite(pred.tau)
        assert pred.tau > 0.4, f"{kind} predictor ranks held-out archs poorly: tau={pred.tau:.3f}"
        assert pred(genes).shape == (150,)
    assert kendall_tau(np.arange(5), np.arange(5)) == pytest.approx(1.0)
    assert kendall_tau(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)


def test_partial_lut_only_yields_covered_resolutions() -> None:
    table = synthetic_table(SPACE, resolutions=(28, 32))
    lat = gene_latency_from_lut(table, SPACE)
    check_budget(lat, lat.min_ms()[0])
    res = evolve(
        SPACE,
        _score_fn(),
        lat,
        budget_ms=lat.max_ms()[0],
        cfg=EvolutionConfig(population=20, generations=5),
        rng=np.random.default_rng(0),
    )
    assert {a.resolution for a in GENOME.decode(res.genes)} <= {28, 32}
