"""Accuracy predictor: ridge regression or a small MLP on the one-hot arch encoding, fitted on measured pairs.

Measuring one candidate (extract, BN recalibration, a pass over the val split) costs ~a second on a CPU; a predictor answers
a whole generation in one matrix product. Like OFA's predictor it sees one-hot decisions, but per layer slot it encodes
the (kernel, expand) pair jointly and zeroes slots beyond the stage depth, so every feature is a real decision. Its
ranking quality on held-out measured pairs (Kendall τ) is reported with every fit, because a predictor that ranks badly
silently steers the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.genome import Genome
from hwnas.stats import kendall_tau

__all__ = ["PredictorConfig", "AccuracyPredictor", "one_hot", "fit_predictor", "kendall_tau"]


@dataclass(frozen=True, slots=True)
class PredictorConfig:
    kind: Literal["ridge", "mlp"] = "ridge"
    ridge_lambda: float = 1.0
    hidden: int = 64
    layers: int = 2
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2  # share of measured pairs held out for Kendall τ


def _offsets(genome: Genome) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(genome.cards)[:-1]])


def one_hot(genome: Genome, genes: np.ndarray) -> np.ndarray:
    """(n, F) float32 features: resolution, per-stage depth, per active slot its (kernel, expand) choice."""
    n = genes.shape[0]
    feats = np.zeros((n, int(genome.cards.sum())), dtype=np.float32)
    idx = genes + _offsets(genome)[None, :]
    mask = np.ones(genes.shape, dtype=bool)
    mask[:, genome.slot_cols] = genome.active(genes)
    rows = np.broadcast_to(np.arange(n)[:, None], genes.shape)
    feats[rows[mask], idx[mask]] = 1.0
    return feats


@dataclass(frozen=True, eq=False)
class AccuracyPredictor:
    """Fitted predictor (weights as numpy arrays). Call on genes → predicted accuracy per row. Pure numpy inference."""

    genome: Genome
    weights: tuple[np.ndarray, ...]  # W0, b0, W1, b1, ... (ridge: one (F,1) layer)
    y_mean: float
    y_std: float
    tau: float  # Kendall τ on held-out pairs (nan when too few pairs to hold out)
    n_train: int
    n_holdout: int
    kind: str

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        h = one_hot(self.genome, genes)
        n_layers = len(self.weights) // 2
        for i in range(n_layers):
            h = h @ self.weights[2 * i] + self.weights[2 * i + 1]
            if i < n_layers - 1:
                np.maximum(h, 0.0, out=h)
        return h[:, 0].astype(np.float64) * self.y_std + self.y_mean

    @property
    def n_params(self) -> int:
        return int(sum(w.size for w in self.weights))


def _fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, ...]:
    xb = np.concatenate([x, np.ones((x.shape[0], 1), dtype=x.dtype)], axis=1).astype(np.float64)
    reg = lam * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0  # do not shrink the bias
    w = np.linalg.solve(xb.T @ xb + reg, xb.T @ y)
    return (w[:-1, None].astype(np.float32), w[-1:].astype(np.float32))


def _fit_mlp(x: np.ndarray, y: np.ndarray, cfg: PredictorConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Full-batch Adam on MSE in numpy (a few hundred pairs: milliseconds per epoch, no torch threads involved)."""
    rng = np.random.default_rng(seed)
    dims = [x.shape[1]] + [cfg.hidden] * cfg.layers + [1]
    params: list[np.ndarray] = []
    for i in range(len(dims) - 1):
        bound = 1.0 / np.sqrt(dims[i])
        params += [rng.uniform(-bound, bound, (dims[i], dims[i + 1])), rng.uniform(-bound, bound, dims[i + 1])]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    x64, target = x.astype(np.float64), y.astype(np.float64)[:, None]
    b1, b2, eps = 0.9, 0.999, 1e-8
    n_layers = len(params) // 2
    for step in range(1, cfg.epochs + 1):
        acts = [x64]
        for i in range(n_layers):
            h = acts[-1] @ params[2 * i] + params[2 * i + 1]
            acts.append(np.maximum(h, 0.0) if i < n_layers - 1 else h)
        grad_out = 2.0 * (acts[-1] - target) / x64.shape[0]
        grads: list[np.ndarray] = [np.empty(0)] * len(params)
        for i in reversed(range(n_layers)):
            grads[2 * i] = acts[i].T @ grad_out + cfg.weight_decay * params[2 * i]
            grads[2 * i + 1] = grad_out.sum(axis=0)
            if i:
                grad_out = (grad_out @ params[2 * i].T) * (acts[i] > 0)
        for j, g in enumerate(grads):
            m[j] = b1 * m[j] + (1 - b1) * g
            v[j] = b2 * v[j] + (1 - b2) * g * g
            params[j] -= cfg.lr * (m[j] / (1 - b1**step)) / (np.sqrt(v[j] / (1 - b2**step)) + eps)
    return tuple(p.astype(np.float32) for p in params)


def _fit(
    genome: Genome, genes: np.ndarray, y: np.ndarray, cfg: PredictorConfig, seed: int
) -> tuple[tuple[np.ndarray, ...], float, float]:
    mean, std = float(y.mean()), float(y.std()) or 1.0
    x = one_hot(genome, genes)
    z = (y - mean) / std
    weights = _fit_ridge(x, z, cfg.ridge_lambda) if cfg.kind == "ridge" else _fit_mlp(x, z, cfg, seed)
    return weights, mean, std


def fit_predictor(
    genome: Genome, genes: np.ndarray, accuracy: np.ndarray, *, cfg: PredictorConfig, rng: np.random.Generator
) -> AccuracyPredictor:
    """Fit on measured (genes, accuracy) pairs; τ comes from a held-out split, then the final fit uses every pair."""
    if cfg.kind not in ("ridge", "mlp"):
        raise HwnasError(f"unknown predictor kind {cfg.kind!r}; use 'ridge' or 'mlp'")
    accuracy = np.asarray(accuracy, dtype=np.float64)
    n = genes.shape[0]
    if n < 4:
        raise HwnasError(f"an accuracy predictor needs at least 4 measured archs, got {n}; measure more candidates")
    seed = int(rng.integers(2**31))
    order = rng.permutation(n)
    n_hold = int(round(n * cfg.holdout)) if n >= 10 else 0
    tau = float("nan")
    if n_hold >= 2:
        hold, train = order[:n_hold], order[n_hold:]
        w, mean, std = _fit(genome, genes[train], accuracy[train], cfg, seed)
        probe = AccuracyPredictor(genome, w, mean, std, tau, train.size, n_hold, cfg.kind)
        tau = kendall_tau(probe(genes[hold]), accuracy[hold])
    w, mean, std = _fit(genome, genes, accuracy, cfg, seed)
    return AccuracyPredictor(genome, w, mean, std, tau, n, n_hold, cfg.kind)
