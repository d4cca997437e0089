"""Measured accuracy (extract + BN recalibration + val) on real Fashion-MNIST images, its cache, and search outputs."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from search_lut import synthetic_table

from hwnas.data.datasets import load_dataset
from hwnas.search import EvolutionConfig, evolve, gene_latency_from_lut, genome_of
from hwnas.search.output import write_search_outputs
from hwnas.search.scorer import ScorerConfig, SupernetScorer
from hwnas.space import get_space, sample
from hwnas.supernet.supernet import Supernet, extract
from hwnas.train.evaluate import recalibrate_bn

SPACE = get_space("mbv3-tiny")


@pytest.fixture(scope="module")
def scorer(fashion_dir):
    data = load_dataset("fashion-mnist", fashion_dir, val_size=1000, seed=0)
    net = Supernet(SPACE).eval()
    cfg = ScorerConfig(calib_batches=1, calib_batch_size=16, val_batch_size=32, val_images=32)
    return SupernetScorer(SPACE, lambda arch: extract(net, arch), train=data.train, val=data.val, cfg=cfg)


def test_scores_are_accuracies_and_the_cache_is_hit(scorer: SupernetScorer) -> None:
    archs = [sample(SPACE, random.Random(i), resolution=28) for i in range(2)]
    genes = genome_of(SPACE).encode(archs + archs[:1])
    first = scorer(genes)
    assert ((first >= 0) & (first <= 1)).all()
    assert first[0] == first[2]
    assert scorer.misses == 2 and scorer.hits == 1
    again = scorer(genes[:2])
    assert np.array_equal(again, first[:2]) and scorer.misses == 2 and scorer.hits == 3


def test_bn_recalibration_sets_batch_statistics() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    x = [torch.randn(8, 1, 10, 10) * 3 + 1 for _ in range(2)]
    recalibrate_bn(model, x)
    with torch.no_grad():
        feats = torch.cat([model[0](b) for b in x])
    assert not model.training
    torch.testing.assert_close(model[1].running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_search_outputs_are_written_and_consistent(scorer: SupernetScorer, tmp_path) -> None:
    table = synthetic_table(SPACE)
    lat = gene_latency_from_lut(table, SPACE)
    lo, hi = lat.min_ms()[0], lat.max_ms()[0]
    budget = lo + 0.05 * (hi - lo)  # small subnets: fast to measure
    res = evolve(
        SPACE,
        scorer,
        lat,
        budget_ms=budget,
        cfg=EvolutionConfig(population=3, generations=50, max_evaluations=5),
        rng=np.random.default_rng(0),
    )
    assert res.evaluated == 5 and res.predicted_ms <= budget
    write_search_outputs([res], tmp_path, context={"seed": 0})
    payload = json.loads((tmp_path / "search.json").read_text())
    assert payload["arch"] == str(res.arch) and payload["evaluated"] == 5 and payload["budget_ms"] == budget
    front = pd.read_csv(tmp_path / "pareto.csv")
    cands = pd.read_csv(tmp_path / "candidates.csv")
    assert len(cands) == 5 and cands["winner"].sum() == 1
    for _, row in front.iterrows():  # nothing evaluated dominates a Pareto point
        assert not ((cands.predicted_ms <= row.predicted_ms) & (cands.accuracy > row.accuracy)).any()

    from hwnas.report import plot_pareto

    png = plot_pareto(tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
