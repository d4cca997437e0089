"""`enas` mode (Pham et al., 2018): an RL controller samples subnets of the shared weights; REINFORCE trains it.

The controller's policy is per-decision logits — one categorical per layer over its choices + skip, the same layout as
α (`ArchParams`), so its samples, its argmax arch and its expected latency use the same code as the gradient
modes. Alternating with the weight steps (which train on controller samples, as in ENAS), each controller step draws
`controller_samples` archs, scores each on one val batch, reward R = accuracy × (LAT/T)^w (MnasNet; w = −β over the
target, 0 under), and follows  ∇ = −(R − b) ∇ log π(arch) − c·∇H(π)  with b a moving average of R.
"""

from __future__ import annotations

import torch

from hwnas.supernet.relaxed import gated_forward
from hwnas.train.arch_params import log_prob
from hwnas.train.expected_latency import expected_latency_ms, indices_latency_ms
from hwnas.train.nas_config import reward_factor
from hwnas.train.nas_state import NasState

__all__ = ["log_prob", "weight_forward", "arch_step", "reinforce_step"]

USES_TEMPERATURE = False


def weight_forward(state: NasState, x: torch.Tensor) -> torch.Tensor:
    return gated_forward(state.supernet, x, state.params.sample(state.generator)[0], None)


def reinforce_step(state: NasState, indices: torch.Tensor, rewards: torch.Tensor) -> dict[str, float]:
    """One controller update from sampled archs and their rewards (moving-average baseline, entropy bonus)."""
    mean_r = float(rewards.mean())
    if state.baseline is None:
        state.baseline = mean_r
    advantage = rewards - state.baseline
    state.baseline = state.cfg.baseline_decay * state.baseline + (1 - state.cfg.baseline_decay) * mean_r
    probs = state.params.probs()
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    advantage = advantage.to(device=probs.device, dtype=probs.dtype)
    loss = -(advantage * log_prob(state.params, indices)).mean() - state.cfg.entropy_weight * entropy
    state.alpha_opt.zero_grad(set_to_none=True)
    loss.backward()
    state.alpha_opt.step()
    lat = float(expected_latency_ms(state.params.probs(torch.float64).detach(), state.arrays))
    state.adapt(lat)
    return {"reward": mean_r, "baseline": state.baseline, "expected_ms": lat}


def arch_step(state: NasState, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    indices = state.params.sample(state.generator, n=state.cfg.controller_samples)
    accs = []
    with torch.no_grad(), state.autocast():
        for idx in indices:
            logits = gated_forward(state.supernet, x, idx, None)
            accs.append((logits.argmax(1) == y).float().mean())
    acc = torch.stack(accs).double()
    lat = indices_latency_ms(indices, state.arrays).to(acc.device)
    rewards = acc * reward_factor(lat, state.cfg, scale=state.scale)
    metrics = reinforce_step(state, indices, rewards)
    return {**metrics, "val_acc": float(acc.mean()), "sampled_ms": float(lat.mean())}
