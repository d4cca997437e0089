"""The λ-sweep benchmark's own logic: per-λ means over seeds and the monotonicity verdicts (fast, no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_nas_modes import SWEEP_KEYS, monotonic_within, sweep_means, sweep_trends  # noqa: E402


def _row(lam: float, seed: int, ms: float, acc: float) -> dict:
    return {"lambda": lam, "seed": seed, **{k: (acc if k.endswith("_acc") else ms) for k in SWEEP_KEYS}}


def test_sweep_means_average_each_lambda_over_its_seeds_in_increasing_lambda() -> None:
    rows = [_row(0.1, 0, 0.2, 0.86), _row(0.0, 0, 0.4, 0.90), _row(0.0, 1, 0.3, 0.88), _row(0.1, 1, 0.1, 0.85)]
    means = sweep_means(rows)
    assert [m["lambda"] for m in means] == [0.0, 0.1] and [m["seeds"] for m in means] == [2, 2]
    assert means[0]["expected_ms"] == pytest.approx(0.35) and means[1]["argmax_warm_val_acc"] == pytest.approx(0.855)


def test_a_rise_counts_only_beyond_the_tolerance() -> None:
    assert monotonic_within([0.90, 0.905, 0.88], tolerance=0.01)
    assert not monotonic_within([0.90, 0.92, 0.88], tolerance=0.01)


def test_trends_use_the_means_and_shrink_the_tolerance_with_seeds() -> None:
    # one seed alone rises from λ=0 to λ=1 (0.870 → 0.880); the means over two seeds fall (0.875 → 0.865)
    rows = [_row(0.0, 0, 0.4, 0.870), _row(0.0, 1, 0.4, 0.880), _row(1.0, 0, 0.2, 0.880), _row(1.0, 1, 0.2, 0.850)]
    trends = sweep_trends(rows, eval_images=5000)
    assert trends["sweep_monotonic"]["argmax_warm_val_acc"] and trends["sweep_kendall_tau"]["expected_ms"] == -1.0
    se = trends["accuracy_standard_error"]
    assert se == pytest.approx((0.87 * 0.13 / 5000) ** 0.5)
    assert trends["sweep_monotonic_within_noise"]["tolerance"] == pytest.approx(2 * se)  # 2·√2·SE/√2
    assert trends["accuracy_drop_first_to_last"]["argmax_warm_val_acc"] == pytest.approx(0.01)
    one_seed = sweep_trends([r for r in rows if r["seed"] == 0], eval_images=5000)
    assert not one_seed["sweep_monotonic"]["argmax_warm_val_acc"]
    se_one = (0.875 * 0.125 / 5000) ** 0.5  # its own mean accuracy, 0.875
    assert one_seed["sweep_monotonic_within_noise"]["tolerance"] == pytest.approx(2 * 2**0.5 * se_one)
