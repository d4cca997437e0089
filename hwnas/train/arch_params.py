"""Architecture parameters α for differentiable / RL search: per layer, logits over its choices plus a skip choice.

One tensor holds all of them: ``logits[stage, position, choice]`` with the choices of `layer_choices(stage)` (kernel-major)
followed by one *skip* column. Stages with fewer positions or choices are padded, and a fixed boolean mask says which
entries exist, so every probability, sample and expectation over the whole network is one vectorized tensor op.

Depth semantics (matching the elastic supernet, which keeps the *first* d layers of a stage): choosing skip at position p
ends the stage there, so the depth is the first skipped position. Skip is therefore allowed exactly at positions p that
are legal depths (p ∈ stage.depths), and forced at p = max depth (padding). The probability that layer p runs is
Π_{q≤p} (1 − P(skip at q)). Every sample decodes to a valid `Arch` of the space.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.space import Arch, LayerChoice, SpaceSpec, check_arch, layer_choices

__all__ = ["ArchParams", "decode_indices", "indices_of", "log_prob"]

_NEG = -1e9  # "minus infinity" that keeps softmax and its gradient finite


class ArchParams(nn.Module):
    """α of one space at one resolution. `logits` is the only parameter; `valid` marks existing entries."""

    valid: torch.Tensor

    def __init__(self, space: SpaceSpec, *, resolution: int) -> None:
        super().__init__()
        self.space = space
        self.resolution = resolution
        self.choices: tuple[tuple[LayerChoice, ...], ...] = tuple(layer_choices(s) for s in space.stages)
        n_stages = len(space.stages)
        self.max_depth = max(max(s.depths) for s in space.stages)
        self.n_choices = max(len(c) for c in self.choices)
        self.skip = self.n_choices  # index of the skip column
        valid = torch.zeros(n_stages, self.max_depth, self.n_choices + 1, dtype=torch.bool)
        for s, stage in enumerate(space.stages):
            top = max(stage.depths)
            valid[s, :top, : len(self.choices[s])] = True
            for p in range(self.max_depth):
                if p in stage.depths or p >= top:
                    valid[s, p, self.skip] = True
        self.register_buffer("valid", valid, persistent=False)
        self.logits = nn.Parameter(torch.zeros(n_stages, self.max_depth, self.n_choices + 1))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.logits.shape)  # type: ignore[return-value]

    def masked(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Logits with non-existent entries at -1e9 (softmax gives them exactly 0)."""
        source = self.logits if logits is None else logits
        return source.masked_fill(~self.valid, _NEG)

    def probs(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """P[stage, position, choice | layer reached] (each row sums to 1), computed in `dtype` if given."""
        logits = self.masked()
        return torch.softmax(logits if dtype is None else logits.to(dtype), dim=-1)

    def sample(self, generator: torch.Generator, *, n: int = 1) -> torch.Tensor:
        """`n` samples of the choice index per (stage, position), shape [n, stages, positions] (multinomial on P).

        Drawn on the CPU from the CPU `generator` wherever α lives, so a seeded run samples the same paths on any
        device; the indices are returned on the CPU."""
        probs = self.probs().detach().cpu().reshape(-1, self.n_choices + 1)
        idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # [rows, n]
        return idx.T.reshape(n, *self.shape[:2])

    def argmax_indices(self) -> torch.Tensor:
        """The argmax arch as indices: every layer takes its most probable entry (choice or skip), as FBNet and DARTS
        derive their final arch; the stage ends at the first layer whose argmax is skip.

        (Not the single most probable arch: with spread-out distributions that one is biased to shallow stages, since
        every extra layer multiplies in a probability < 1.)"""
        with torch.no_grad():
            return self.probs().argmax(dim=-1).cpu()

    def arch(self) -> Arch:
        return decode_indices(self, self.argmax_indices())

    def distributions(self) -> list[list[dict[str, float]]]:
        """Per stage, per position: {choice string or 'skip': probability} (for arch.json and reports)."""
        probs = self.probs().detach()
        out = []
        for s, choices in enumerate(self.choices):
            stage = []
            for p in range(max(self.space.stages[s].depths)):
                row = {str(c): round(float(probs[s, p, i]), 6) for i, c in enumerate(choices)}
                if bool(self.valid[s, p, self.skip]):
                    row["skip"] = round(float(probs[s, p, self.skip]), 6)
                stage.append(row)
            out.append(stage)
        return out


def decode_indices(params: ArchParams, indices: torch.Tensor) -> Arch:
    """Indices [stages, positions] → `Arch`: each stage keeps the layers before its first skip."""
    stages = []
    for s, row in enumerate(indices.tolist()):
        layers = []
        for c in row:
            if c == params.skip:
                break
            layers.append(params.choices[s][c])
        stages.append(tuple(layers))
    return check_arch(params.space, Arch(params.resolution, tuple(stages)))


def indices_of(params: ArchParams, arch: Arch) -> torch.Tensor:
    """Inverse of `decode_indices` (positions past the depth are skip)."""
    out = torch.full(params.shape[:2], params.skip, dtype=torch.long)
    for s, layers in enumerate(arch.stages):
        index = {c: i for i, c in enumerate(params.choices[s])}
        for p, layer in enumerate(layers):
            out[s, p] = index[layer]
    return out


def log_prob(params: ArchParams, indices: torch.Tensor) -> torch.Tensor:
    """log P of sampled archs [n, stages, positions]: sum over the decisions taken (up to each stage's first skip)."""
    logp = torch.log_softmax(params.masked(), dim=-1)
    indices = indices.to(logp.device)
    taken = logp.expand(indices.shape[0], *logp.shape).gather(-1, indices.unsqueeze(-1)).squeeze(-1)
    skipped = (indices == params.skip).long()
    decided = (torch.cumsum(skipped, dim=-1) - skipped) == 0  # positions before and at the first skip
    return (taken * decided).sum(dim=(-2, -1))
