"""Rank statistics shared by the latency and search layers (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["kendall_tau"]


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b of two paired samples (ties handled as scipy.stats.kendalltau does); NaN for fewer than 2 pairs or
    a constant sample. O(n²) in numpy: fine for the few hundred subnets or predictor pairs it is used on."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2:
        return float("nan")
    iu = np.triu_indices(a.size, k=1)
    da, db = np.sign(a[:, None] - a[None, :])[iu], np.sign(b[:, None] - b[None, :])[iu]
    denom = np.sqrt(float(np.count_nonzero(da)) * float(np.count_nonzero(db)))
    return float(np.sum(da * db) / denom) if denom > 0 else float("nan")
