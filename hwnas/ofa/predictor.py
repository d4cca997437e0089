"""Once-for-All's accuracy predictors for the `mbv3` space, evaluated on hwnas gene matrices.

OFA specializes its supernet with an MLP that maps a one-hot arch encoding to ImageNet top-1 accuracy (a fraction),
trained on ~16k measured subnets. Two file formats exist, both read here:

- ``ofa-mlp`` — `ofa.nas.accuracy_predictor.AccuracyPredictor`: ``layers.{0,1,2}.0`` (Linear + ReLU, 400 wide),
  ``layers.3`` (Linear, no bias), ``base_acc`` added to the output. Input (`MobileNetArchEncoder`): one slot per image size
  of its `image_size_list` (OFA's default list is the space's 128/160/192/224), then per layer slot (5 stages × 4) a
  one-hot kernel (3/5/7), then per layer slot a one-hot expand ratio (3/4/6); slots past a stage's depth are all zero.
- ``ofa-tutorial`` — the tutorial's `AccuracyPredictor` (``acc_predictor.pth``): ``0, 2, 4`` (Linear + ReLU) and ``6``
  (Linear with bias), no base. Input: 60 kernel one-hots, 60 expand one-hots (same slot order), then 8 resolution slots
  for 112, 128, …, 224 px.

Features are built for a whole population at once from genes (`hwnas.search.genome`): a gene's layer choice indexes
`layer_choices(stage)`, kernel-major, so its kernel and expand one-hot positions are a division and a remainder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from hwnas.errors import HwnasError
from hwnas.ofa.weights import read_torch_file, state_dict_of
from hwnas.search.genome import genome_of
from hwnas.space import Arch, SpaceSpec

__all__ = ["PredictorKind", "OfaAccuracyPredictor", "load_predictor_state", "predictor_from_state"]

PredictorKind = Literal["ofa-mlp", "ofa-tutorial"]
_KERNELS = (3, 5, 7)
_EXPANDS = (3, 4, 6)
_SLOTS = 20  # 5 stages × max depth 4
_TUTORIAL_RESOLUTIONS = tuple(range(112, 225, 16))


@dataclass(frozen=True, eq=False)
class OfaAccuracyPredictor:
    """An imported OFA predictor bound to a space: `predict_genes(genes)` → predicted top-1 (fraction) per row."""

    kind: PredictorKind
    space: SpaceSpec
    hidden: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (weight, bias) of each Linear + ReLU
    out_weight: torch.Tensor  # (1, hidden)
    out_bias: float
    base_acc: float
    resolutions: tuple[int, ...]  # the image sizes of its resolution one-hot, in order
    state: dict[str, torch.Tensor]  # the tensors as read (stored in the run checkpoint)

    @property
    def n_inputs(self) -> int:
        return int(self.hidden[0][0].shape[1])

    def _offsets(self) -> tuple[int, int, int]:
        """Start of the resolution, kernel and expand one-hot blocks."""
        n_res = len(self.resolutions)
        if self.kind == "ofa-mlp":
            return 0, n_res, n_res + 3 * _SLOTS
        return 6 * _SLOTS, 0, 3 * _SLOTS

    def features(self, genes: np.ndarray) -> np.ndarray:
        """(n, n_inputs) float32 one-hot encodings of gene rows, exactly OFA's `arch2feature` / `spec2feats`."""
        genome = genome_of(self.space)
        genes = genome.check(np.asarray(genes, dtype=np.int64))
        n = genes.shape[0]
        res_at, k_at, e_at = self._offsets()
        feats = np.zeros((n, self.n_inputs), dtype=np.float32)
        rows = np.arange(n)
        res_pos = np.array([self.resolutions.index(r) for r in self.space.resolutions], dtype=np.int64)
        feats[rows, res_at + res_pos[genes[:, 0]]] = 1.0
        choice = genes[:, genome.slot_cols]
        active = genome.active(genes)
        r, slot = np.nonzero(active)
        picked = choice[r, slot]
        feats[r, k_at + 3 * slot + picked // len(_EXPANDS)] = 1.0
        feats[r, e_at + 3 * slot + picked % len(_EXPANDS)] = 1.0
        return feats

    @torch.no_grad()
    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        for weight, bias in self.hidden:
            x = torch.relu(torch.nn.functional.linear(x, weight, bias))
        y = torch.nn.functional.linear(x, self.out_weight)[:, 0] + self.out_bias
        return (y + self.base_acc).numpy().astype(np.float64)

    def predict_genes(self, genes: np.ndarray) -> np.ndarray:
        """Predicted top-1 accuracy (fraction) of each gene row — a `ScoreFn` for the search strategies."""
        return self.predict_features(self.features(genes))

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        return self.predict_genes(genes)

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.predict_genes(genome_of(self.space).encode(list(archs)))


def _linear(
    state: Mapping[str, torch.Tensor], name: str, *, bias: bool, where: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = state.get(f"{name}.weight")
    b = state.get(f"{name}.bias")
    if weight is None or weight.ndim != 2 or (bias and (b is None or b.shape != weight.shape[:1])):
        raise HwnasError(f"{where}: layer {name!r} is missing or malformed; expected OFA's accuracy-predictor MLP")
    return weight.float(), (b.float() if bias and b is not None else None)


def _kind_of(state: Mapping[str, torch.Tensor], where: str) -> PredictorKind:
    if "layers.0.0.weight" in state and "base_acc" in state:
        return "ofa-mlp"
    if "0.weight" in state and "6.weight" in state:
        return "ofa-tutorial"
    first = next(iter(state), "?")
    raise HwnasError(
        f"{where} is not an OFA accuracy predictor (first tensor {first!r}; expected 'layers.0.0.weight' "
        "and 'base_acc', or the tutorial's '0.weight' … '6.weight')"
    )


def _check_space(space: SpaceSpec, where: str) -> None:
    ok = len(space.stages) == 5 and all(
        max(s.depths) == 4 and tuple(sorted(s.kernels)) == _KERNELS and tuple(sorted(s.expands)) == _EXPANDS
        for s in space.stages
    )
    if not ok:
        raise HwnasError(
            f"{where}: OFA's accuracy predictors encode the mbv3 space (5 stages of up to 4 layers, "
            f"k3/5/7, e3/4/6); space {space.name} is not that"
        )


def predictor_from_state(state: Mapping[str, torch.Tensor], space: SpaceSpec, *, where: str) -> OfaAccuracyPredictor:
    """Bind the tensors of an OFA predictor file to `space`, checking that its input layout fits that space."""
    _check_space(space, where)
    kind = _kind_of(state, where)
    if kind == "ofa-mlp":
        names = [
            f"layers.{i}.0" for i in range(sum(1 for k in state if k.endswith(".0.weight") and k.startswith("layers.")))
        ]
        out_name, out_bias_used = f"layers.{len(names)}", False
        base_t = state["base_acc"]
        if base_t.numel() != 1:
            raise HwnasError(f"{where}: base_acc must hold one value, got shape {list(base_t.shape)}")
        base = float(base_t.reshape(()))
    else:
        names = ["0", "2", "4"]
        out_name, out_bias_used, base = "6", True, 0.0
    hidden: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name in names:
        weight, bias = _linear(state, name, bias=True, where=where)
        assert bias is not None
        if hidden and weight.shape[1] != hidden[-1][0].shape[0]:
            raise HwnasError(
                f"{where}: layer {name!r} takes {weight.shape[1]} inputs after a layer of "
                f"{hidden[-1][0].shape[0]}; the file is not one MLP"
            )
        hidden.append((weight, bias))
    if not hidden:
        raise HwnasError(f"{where}: no hidden layers found; expected OFA's accuracy-predictor MLP")
    out_weight, out_bias = _linear(state, out_name, bias=out_bias_used, where=where)
    if tuple(out_weight.shape) != (1, hidden[-1][0].shape[0]):
        raise HwnasError(
            f"{where}: output layer {out_name!r} has shape {list(out_weight.shape)}, expected "
            f"[1, {hidden[-1][0].shape[0]}]"
        )
    known = {f"{n}.{p}" for n in names for p in ("weight", "bias")} | {f"{out_name}.weight"}
    known |= {f"{out_name}.bias"} if out_bias_used else {"base_acc"}
    extra = sorted(set(state) - known)
    if extra:
        raise HwnasError(f"{where}: unexpected tensor {extra[0]!r}; expected OFA's accuracy-predictor MLP only")
    n_in = int(hidden[0][0].shape[1])
    if kind == "ofa-mlp":
        n_res = n_in - 6 * _SLOTS
        if n_res != len(space.resolutions):
            raise HwnasError(
                f"{where}: the predictor takes {n_in} inputs, so it encodes {n_res} image sizes; the "
                f"{space.name} space has {len(space.resolutions)} ({', '.join(map(str, space.resolutions))}) — "
                "it was trained for another space or image-size list"
            )
        resolutions = tuple(space.resolutions)
    else:
        if n_in != 6 * _SLOTS + len(_TUTORIAL_RESOLUTIONS):
            raise HwnasError(
                f"{where}: the tutorial predictor takes {6 * _SLOTS + len(_TUTORIAL_RESOLUTIONS)} inputs, "
                f"this one {n_in}; it was trained for another space"
            )
        resolutions = _TUTORIAL_RESOLUTIONS
        missing = [r for r in space.resolutions if r not in resolutions]
        if missing:
            raise HwnasError(
                f"{where}: the tutorial predictor knows {resolutions[0]}–{resolutions[-1]} px in steps of "
                f"16, not {missing}"
            )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise HwnasError(f"{where}: {name!r} holds NaN or infinite values; download the predictor again")
    return OfaAccuracyPredictor(
        kind=kind,
        space=space,
        hidden=tuple((w, b) for w, b in hidden),
        out_weight=out_weight,
        out_bias=float(out_bias.reshape(())) if out_bias is not None else 0.0,
        base_acc=base,
        resolutions=resolutions,
        state={k: v.clone() for k, v in state.items()},
    )


def load_predictor_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an OFA predictor file (`.pth`; a bare state dict or `{"state_dict": ...}`), loaded safely."""
    return state_dict_of(read_torch_file(path, what="accuracy predictor"), what="accuracy predictor", path=path)
