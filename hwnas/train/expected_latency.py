"""Expected latency E[LAT](α), differentiable, from the LUT's per-stage choice-latency arrays.

The LUT folds (per resolution) into ``stage_ms[s][position, choice]`` + one fixed term (`choice_latency_ms`), padded
here into one tensor shaped like α (without the skip column). With P = softmax(α) per layer and the stage ending at its
first skip, layer p of a stage runs with probability keep[p] = Π_{q<p} (1 − P[q, skip]) and then costs
Σ_c P[p, c]/(1 − P[p, skip]) · ms[p, c], so

    E[LAT] = fixed + Σ_s Σ_p keep[s, p] · Σ_c P[s, p, c] · ms[s, p, c]

— a cumprod, a product and a sum over the whole network: no Python loop over layers or choices per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hwnas.latency import LatencyTable, choice_latency_ms
from hwnas.space import Arch, SpaceSpec
from hwnas.train.arch_params import ArchParams, indices_of, log_prob

__all__ = [
    "LatencyArrays",
    "latency_arrays",
    "expected_latency_ms",
    "indices_latency_ms",
    "arch_latency_ms",
    "decode_near_target",
]


@dataclass(frozen=True)
class LatencyArrays:
    """Calibrated ms per [stage, position, choice] (0 where absent) and the fixed stem + first block + head term."""

    ms: torch.Tensor
    fixed_ms: float

    def to(self, device: torch.device) -> LatencyArrays:
        return LatencyArrays(self.ms.to(device), self.fixed_ms)


def latency_arrays(table: LatencyTable, space: SpaceSpec, params: ArchParams) -> LatencyArrays:
    """The LUT at `params.resolution`, laid out like `params.logits[..., :-1]` (float64 for exact sums)."""
    chosen = choice_latency_ms(table, space, params.resolution)
    ms = torch.zeros(params.shape[0], params.shape[1], params.n_choices, dtype=torch.float64)
    for s, arr in enumerate(chosen.stage_ms):
        ms[s, : arr.shape[0], : arr.shape[1]] = torch.from_numpy(arr)
    return LatencyArrays(ms, float(chosen.fixed_ms))


def _keep(skip_probs: torch.Tensor) -> torch.Tensor:
    """P(layer p runs) = Π_{q<p} (1 − skip[q]) along the last dim (exclusive cumulative product)."""
    ones = torch.ones_like(skip_probs[..., :1])
    return torch.cumprod(torch.cat([ones, 1.0 - skip_probs[..., :-1]], dim=-1), dim=-1)


def expected_latency_ms(probs: torch.Tensor, arrays: LatencyArrays) -> torch.Tensor:
    """E[LAT] under per-layer distributions `probs` [stages, positions, choices + skip] (differentiable in `probs`)."""
    ms = arrays.ms.to(device=probs.device, dtype=probs.dtype)
    keep = _keep(probs[..., -1])
    per_layer = (probs[..., :-1] * ms).sum(-1)
    return arrays.fixed_ms + (keep * per_layer).sum()


def indices_latency_ms(indices: torch.Tensor, arrays: LatencyArrays) -> torch.Tensor:
    """Predicted ms of sampled archs given as indices [..., stages, positions] (skip = n_choices): one gather, on the
    arrays' device."""
    n_choices = arrays.ms.shape[-1]
    indices = indices.to(arrays.ms.device)
    skipped = indices == n_choices
    kept = torch.cumsum(skipped.long(), dim=-1) == 0  # before the first skip
    safe = indices.clamp_max(n_choices - 1)
    ms = arrays.ms.expand(*indices.shape, n_choices).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return arrays.fixed_ms + (ms * kept).sum(dim=(-2, -1))


def arch_latency_ms(params: ArchParams, arrays: LatencyArrays, arch: Arch) -> float:
    """Predicted ms of one arch (equals `LatencyPredictor.predict` at this resolution)."""
    return float(indices_latency_ms(indices_of(params, arch), arrays))


def decode_near_target(
    params: ArchParams,
    arrays: LatencyArrays,
    target_ms: float,
    *,
    generator: torch.Generator,
    samples: int = 4096,
    tolerance: float = 0.05,
) -> torch.Tensor:
    """The most probable arch (indices) among the argmax and `samples` draws from P whose predicted latency is within
    ±`tolerance` of the target; if none is, the one closest to the target.

    Why: the latency loss steers E[LAT] — a mean over the whole distribution. After a short search the distributions
    are still spread, and the per-layer argmax sits at the cheap end (the push moves the mode first): E[LAT] can sit on
    the target while the argmax arch is far faster. Draws from P concentrate around E[LAT], so the best of them near the
    target is the arch the trained α actually prefers at that latency.
    """
    with torch.no_grad():
        idx = torch.cat([params.argmax_indices()[None], params.sample(generator, n=samples)])
        lat = indices_latency_ms(idx, arrays)
        ok = (lat / target_ms - 1.0).abs() <= tolerance
        if not bool(ok.any()):
            return idx[int((lat - target_ms).abs().argmin())]
        score = log_prob(params, idx).double().masked_fill(~ok, float("-inf"))
        return idx[int(score.argmax())]
