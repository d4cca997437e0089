"""REINFORCE controller (Zoph & Le; MnasNet) with one independent categorical per decision.

The policy has one logit vector per gene (resolution, each stage depth, each layer slot's (kernel, expand)). Each step it
samples a batch of archs, scores them, and rewards them MnasNet-style: ``R = acc · (lat / T)^w`` with ``w = alpha`` when
``lat ≤ T`` and ``w = beta`` otherwise (soft constraint; alpha = 0, beta = -1 punishes overshoot proportionally).
The advantage is the reward minus an exponential moving-average baseline. Per-decision logits instead of an LSTM: the
decisions of this space are nearly independent given depth, and the controller then costs nothing next to evaluations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.genome import genome_of
from hwnas.search.latency_model import GeneLatency, check_budget
from hwnas.search.result import Evaluations, ScoreFn, SearchResult, best_result
from hwnas.space import SpaceSpec

__all__ = ["RLConfig", "rl_search", "mnas_reward"]


@dataclass(frozen=True, slots=True)
class RLConfig:
    evaluations: int = 100  # distinct archs scored (the same budget random search gets)
    batch: int = 10  # archs sampled per policy update
    max_steps: int = 1000  # bound on policy updates (many samples may repeat already-scored archs)
    lr: float = 0.1
    baseline_decay: float = 0.9
    alpha: float = 0.0  # latency exponent when within budget
    beta: float = -1.0  # latency exponent when over budget
    entropy: float = 0.0  # optional entropy bonus weight

    def __post_init__(self) -> None:
        if self.evaluations < 1 or self.batch < 1 or self.max_steps < 1 or self.lr <= 0:
            raise HwnasError("rl search needs evaluations, batch, max_steps >= 1 and lr > 0")
        if not 0 <= self.baseline_decay < 1:
            raise HwnasError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


def mnas_reward(
    accuracy: np.ndarray, latency_ms: np.ndarray, *, budget_ms: float, alpha: float, beta: float
) -> np.ndarray:
    """MnasNet's reward ACC · (LAT/T)^w, w = alpha within budget, beta over it."""
    ratio = latency_ms / budget_ms
    return accuracy * ratio ** np.where(ratio <= 1.0, alpha, beta)


def rl_search(
    space: SpaceSpec,
    score_fn: ScoreFn,
    latency_fn: GeneLatency,
    *,
    budget_ms: float,
    cfg: RLConfig,
    rng: np.random.Generator,
) -> SearchResult:
    """Train a per-decision REINFORCE policy on the reward for `cfg.evaluations` distinct archs; best feasible one wins.

    If no sampled arch fit the budget, the best-rewarded one is repaired to the budget and scored (one extra evaluation).
    """
    start = time.perf_counter()
    genome = genome_of(space)
    check_budget(latency_fn, budget_ms)
    evals = Evaluations(genome, score_fn, max_evaluations=cfg.evaluations)
    cards = genome.cards
    logits = np.zeros((genome.n_genes, int(cards.max())))
    logits[np.arange(int(cards.max()))[None, :] >= cards[:, None]] = -np.inf
    baseline: float | None = None
    steps = 0
    for _ in range(cfg.max_steps):
        if evals.exhausted:
            break
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        cum = probs.cumsum(axis=1)
        u = rng.random((cfg.batch, genome.n_genes, 1))
        genes = np.minimum((u > cum[None, :, :]).sum(axis=2), cards[None, :] - 1)
        acc = evals.score(genes)
        scored = np.isfinite(acc)
        if not scored.any():
            break
        reward = mnas_reward(
            acc[scored], latency_fn(genes[scored]), budget_ms=budget_ms, alpha=cfg.alpha, beta=cfg.beta
        )
        mean = float(reward.mean())
        baseline = mean if baseline is None else cfg.baseline_decay * baseline + (1 - cfg.baseline_decay) * mean
        adv = reward - baseline
        # ∇ log π(a) for a categorical = onehot(a) − softmax(logits), summed over the batch, weighted by the advantage
        grad = -adv.sum() * probs
        np.add.at(grad, (np.arange(genome.n_genes)[None, :].repeat(scored.sum(), 0), genes[scored]), adv[:, None])
        if cfg.entropy:
            logp = np.log(np.where(probs > 0, probs, 1.0))
            ent_grad = -probs * (logp - (probs * logp).sum(axis=1, keepdims=True))
            grad += cfg.entropy * ent_grad * scored.sum()
        logits = logits + cfg.lr * grad / scored.sum()
        steps += 1
    all_genes, all_scores = evals.arrays()
    lat = latency_fn(all_genes)
    if not (lat <= budget_ms).any():
        reward = mnas_reward(all_scores, lat, budget_ms=budget_ms, alpha=cfg.alpha, beta=cfg.beta)
        repaired = latency_fn.repair(all_genes[[int(np.argmax(reward))]], budget_ms=budget_ms)
        evals.max_evaluations = None
        evals.score(repaired)
    return best_result("rl", evals, latency_fn, budget_ms=budget_ms, started=start, notes={"policy_updates": steps})
