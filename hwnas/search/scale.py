"""EfficientNet compound scaling of a found arch to fill a larger budget.

Depth, width and resolution grow together as ``d·α^φ``, ``w·β^φ``, ``r·γ^φ`` with ``α·β²·γ² ≈ 2`` (Tan & Le, 2019:
α = 1.2, β = 1.1, γ = 1.15), so each unit of φ roughly doubles the FLOPs. A scaled arch leaves the trained space (wider
channels, deeper stages, new resolutions), which has two consequences this module handles explicitly:

- latency: it needs LUT rows for *new* block signatures. `scale_to_budget` asks its `measure` callback for them (the
  command line times them on the table's device: `hwnas.latency.extra_rows`); the whole-model calibration of the table
  is applied as for any arch (at a new resolution, its global line);
- accuracy: the supernet never trained it, so it is reported as unknown until the scaled model is fine-tuned.
  `init_scaled_model` gives the fine-tune its start: the supernet's weights of the base arch in the leading channels,
  new channels cut off from the old ones, added layers starting as identities — so before any training the scaled model
  computes exactly what the base arch computes at the scaled resolution.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas.errors import HwnasError
from hwnas.space import Arch, BlockSpec, SpaceSpec, blocks_of, get_space, space_hash, with_io

if TYPE_CHECKING:
    from torch import nn

    from hwnas.latency.harness import TimingStats
    from hwnas.latency.lut import LatencyTable
    from hwnas.supernet import Supernet

__all__ = [
    "ScaleConfig",
    "ScaledArch",
    "ScaleResult",
    "RowSource",
    "compound_scale",
    "missing_blocks",
    "scale_to_budget",
    "scaled_to_meta",
    "scaled_from_meta",
    "scaled_latency_ms",
    "scaled_card",
    "init_scaled_model",
]

log = logging.getLogger(__name__)
RowSource = Callable[[Sequence[BlockSpec]], "Mapping[str, TimingStats]"]  # missing blocks -> rows on the table's base


@dataclass(frozen=True, slots=True)
class ScaleConfig:
    alpha: float = 1.2  # depth
    beta: float = 1.1  # width
    gamma: float = 1.15  # resolution
    phis: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
    resolution_step: int = 4

    def __post_init__(self) -> None:
        if min(self.alpha, self.beta, self.gamma) < 1.0 or not self.phis or min(self.phis) <= 0:
            raise HwnasError("compound scaling needs alpha, beta, gamma >= 1 and positive phis")


@dataclass(frozen=True, slots=True)
class ScaledArch:
    """`arch` = `base_arch` scaled by `phi`; `space` is the widened, deepened space it lives in."""

    phi: float
    space: SpaceSpec
    arch: Arch
    predicted_ms: float
    base_space: SpaceSpec
    base_arch: Arch


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """The winner and every scaling priced on the way (ascending phi; the last may be the one over budget)."""

    best: ScaledArch
    tried: tuple[ScaledArch, ...]
    seconds: float


def compound_scale(space: SpaceSpec, arch: Arch, phi: float, *, cfg: ScaleConfig) -> tuple[SpaceSpec, Arch]:
    """The scaled arch and the (widened, deepened, higher-resolution) space it lives in; new layers repeat the stage's
    last."""
    width = round(space.width * cfg.beta**phi, 3)
    step = cfg.resolution_step
    res = max(step, int(round(arch.resolution * cfg.gamma**phi / step)) * step)
    stages = []
    for layers in arch.stages:
        depth = max(len(layers), math.ceil(len(layers) * cfg.alpha**phi))
        stages.append(layers + (layers[-1],) * (depth - len(layers)))
    return _scaled_space(space, width=width, depths=[len(s) for s in stages], resolution=res), Arch(res, tuple(stages))


def _scaled_space(space: SpaceSpec, *, width: float, depths: Sequence[int], resolution: int) -> SpaceSpec:
    """The preset of `space` at `width`, with `depths[i]` added to stage i's depth choices and `resolution` added."""
    base = with_io(get_space(space.name, width=width), in_channels=space.in_channels, num_classes=space.num_classes)
    stages = tuple(
        dataclasses.replace(stage, depths=tuple(sorted(set(stage.depths) | {depth})))
        for stage, depth in zip(base.stages, depths)
    )
    return dataclasses.replace(base, stages=stages, resolutions=tuple(sorted(set(base.resolutions) | {resolution})))


def missing_blocks(table: LatencyTable, space: SpaceSpec, arch: Arch) -> tuple[BlockSpec, ...]:
    """The distinct blocks of `arch` that `table` has no row for."""
    return tuple(spec for spec in dict.fromkeys(blocks_of(space, arch)) if spec.key not in table)


def _scaled_ms(table: LatencyTable, space: SpaceSpec, arch: Arch) -> tuple[float, list[str]]:
    """Calibrated latency from raw rows, or NaN and the keys the table lacks.

    A scaled resolution has no calibration line of its own; it takes the line of the nearest calibrated resolution
    (the larger one on a tie) rather than the global one: the per-resolution lines move steadily with resolution, and
    the global line, fitted over all of them, sits below the lines of the largest resolutions a scaled arch grows from.
    """
    from hwnas.latency.calibrate import Calibration, boundary_melems, final_stage_mweights

    keys = [b.key for b in blocks_of(space, arch)]
    missing = [k for k in dict.fromkeys(keys) if k not in table]
    if missing:
        return float("nan"), missing
    raw = sum(table.ms(k) for k in keys)
    cal = Calibration.from_meta(table.meta.get("calibration"))
    res = min(
        (r for r, _, _ in cal.per_resolution), key=lambda r: (abs(r - arch.resolution), -r), default=arch.resolution
    )
    return cal.apply(raw, res, boundary_melems(space, arch), final_stage_mweights(space, arch)), []


WINDOW_MARGIN = 1.25  # phis measured together: those extrapolated to within this factor of the budget
# latency growth per unit of phi before any scaled arch is priced: half of the FLOPs' ln 2, since small and
# overhead-bound networks grow slower than their FLOPs (a window too large costs rows, one too small a warm-up)
PRIOR_GROWTH = 0.5 * math.log(2.0)


def scale_to_budget(
    table: LatencyTable,
    space: SpaceSpec,
    arch: Arch,
    *,
    budget_ms: float,
    cfg: ScaleConfig,
    measure: RowSource | None = None,
) -> ScaleResult:
    """The largest compound-scaled version of `arch` (over `cfg.phis`, ascending, stopping at the first over budget)
    whose predicted latency fits `budget_ms`.

    Rows the table lacks come from `measure`. Each call of it costs a warm-up of the device, so it is asked for a
    window of phis at once: the next phi and every later one whose latency, extrapolated as ``ms(φ) = ms(0)·e^{gφ}``,
    is within `WINDOW_MARGIN` × the budget. g starts at `PRIOR_GROWTH` and is refitted to each phi priced, so a search
    takes one or two timing batches, not one per phi. Without `measure`, or when it does not deliver the rows, the
    error names them.
    """
    from hwnas.latency.extra_rows import with_extra_rows

    start = time.perf_counter()
    phis = sorted(cfg.phis)
    scalings = [(phi, *compound_scale(space, arch, phi, cfg=cfg)) for phi in phis]
    base_ms, _ = _scaled_ms(table, space, arch)
    growth = PRIOR_GROWTH
    best: ScaledArch | None = None
    tried: list[ScaledArch] = []
    for i, (phi, scaled_space, scaled) in enumerate(scalings):
        missing = missing_blocks(table, scaled_space, scaled)
        if missing and measure is not None:
            window = [s for s in scalings[i + 1 :] if not base_ms * math.exp(growth * s[0]) > WINDOW_MARGIN * budget_ms]
            wanted = dict.fromkeys(missing + tuple(b for _, sp, a in window for b in missing_blocks(table, sp, a)))
            table = with_extra_rows(table, measure(tuple(wanted)))
            missing = missing_blocks(table, scaled_space, scaled)
        if missing:
            raise HwnasError(
                f"LUT {table.source} lacks {len(missing)} rows for the arch scaled by phi={phi} (width "
                f"{scaled_space.width}, resolution {scaled.resolution}), e.g. '{missing[0].key}'; 'hwnas search "
                f"--strategy scale' times them on demand on the table's device, or use --strategy evolution"
            )
        ms, _ = _scaled_ms(table, scaled_space, scaled)
        tried.append(ScaledArch(phi, scaled_space, scaled, ms, space, arch))
        if ms > budget_ms:
            break
        best = tried[-1]
        if base_ms > 0 and ms > base_ms:
            growth = math.log(ms / base_ms) / phi
    if best is None:
        raise HwnasError(
            f"even the smallest scaling (phi={phis[0]}) of {arch} exceeds {budget_ms:g} ms "
            f"({tried[0].predicted_ms:.4f} ms); search within the space instead (--strategy evolution)"
        )
    return ScaleResult(best, tuple(tried), time.perf_counter() - start)


def scaled_to_meta(scaled: ScaledArch, cfg: ScaleConfig) -> dict[str, Any]:
    """What `scaled_from_meta` (and so `hwnas export`) needs to rebuild the scaled space and arch, as JSON."""
    base, space = scaled.base_space, scaled.space
    return {
        "phi": scaled.phi,
        "arch": str(scaled.arch),
        "base_arch": str(scaled.base_arch),
        "base_space": {"name": base.name, "width": base.width, "hash": space_hash(base)},
        "width": space.width,
        "resolution": scaled.arch.resolution,
        "depths": [len(s) for s in scaled.arch.stages],
        "added_depths": [len(s) - len(b) for s, b in zip(scaled.arch.stages, scaled.base_arch.stages)],
        "space_hash": space_hash(space),
        "config": {"alpha": cfg.alpha, "beta": cfg.beta, "gamma": cfg.gamma, "resolution_step": cfg.resolution_step},
    }


def scaled_from_meta(meta: Mapping[str, Any], base_space: SpaceSpec, *, where: str) -> ScaledArch:
    """The scaled arch recorded by `scaled_to_meta`, rebuilt in `base_space` (the run's) and checked by space hash."""
    from hwnas.space import check_arch

    try:
        if meta["base_space"]["hash"] != space_hash(base_space):
            raise HwnasError(
                f"{where}: the arch was scaled from space {meta['base_space']['name']} (hash "
                f"{meta['base_space']['hash']}), not this run's {base_space.name} (hash "
                f"{space_hash(base_space)}); export it with the run it was searched for"
            )
        base_arch = check_arch(base_space, Arch.parse(meta["base_arch"]))
        arch = Arch.parse(meta["arch"])
        space = _scaled_space(
            base_space, width=float(meta["width"]), depths=[len(s) for s in arch.stages], resolution=arch.resolution
        )
        phi, predicted = float(meta["phi"]), float(meta.get("predicted_ms") or "nan")
    except (KeyError, TypeError, ValueError):
        raise HwnasError(f"{where}: the 'scaled' entry is incomplete; rerun 'hwnas search --strategy scale'") from None
    if space_hash(space) != meta.get("space_hash"):
        raise HwnasError(
            f"{where}: the scaled space rebuilt from it (hash {space_hash(space)}) is not the one "
            f"searched (hash {meta.get('space_hash')}); rerun 'hwnas search --strategy scale' with this "
            "hwnas"
        )
    return ScaledArch(phi, space, check_arch(space, arch), predicted, base_space, base_arch)


def scaled_latency_ms(table: LatencyTable, lut_path: Path, space: SpaceSpec, arch: Arch) -> float | None:
    """The calibrated prediction of a scaled arch from the table at `lut_path` plus its cached extra rows (None, with
    a warning, when rows are missing: the search that chose it used another table)."""
    from hwnas.latency.extra_rows import load_extra_rows, with_extra_rows

    ms, missing = _scaled_ms(with_extra_rows(table, load_extra_rows(table, lut_path)), space, arch)
    if missing:
        log.warning(
            "LUT %s and its extra rows lack %d rows of %s (e.g. %s): predicted latency left empty; rerun "
            "'hwnas search --strategy scale' with this LUT",
            lut_path,
            len(missing),
            arch,
            missing[0],
        )
        return None
    return ms


def scaled_card(scaled: Mapping[str, Any], *, finetune_epochs: int) -> dict[str, Any]:
    """The model card's 'scaled' entry: what was scaled, how the model was initialised, where its accuracy comes
    from."""
    return {
        **scaled,
        "init": "the supernet's weights of base_arch in the leading channels (weights from new to old channels "
        "zeroed), added layers copies of their stage's last layer starting as identities (project "
        "BatchNorm scale and shift 0)",
        "accuracy_source": f"{finetune_epochs}-epoch KD fine-tune of a compound-scaled arch outside the trained "
        "supernet (its accuracy is not the supernet's)",
    }


def init_scaled_model(supernet: Supernet, scaled: ScaledArch) -> nn.Sequential:
    """The static model of `scaled.arch`, initialised from the supernet's weights of `scaled.base_arch`.

    Every block of the scaled model has a source block in the base arch's extracted model (stem, first block, head, and
    layer j of stage i from layer min(j, base depth - 1)): same op, kernel and expand, at least as many channels. The
    source's tensors are copied into the leading channels; the weights from new input channels into old output
    channels are zeroed (new channels see the old ones, but the old ones do not see them), and layers added by depth
    scaling copy the stage's last layer with their project BatchNorm's scale and shift set to 0, so their residual makes
    them identities. The result, in eval mode, computes the base arch's function at the scaled resolution; fine-tuning
    then trains the new channels and layers.
    """
    import torch

    from hwnas.blocks import build_model
    from hwnas.supernet import extract

    base = extract(supernet, scaled.base_arch)
    param = next(base.parameters())
    model = build_model(scaled.space, scaled.arch).to(device=param.device, dtype=param.dtype)
    sources: list[tuple[int, bool]] = [(0, False), (1, False)]
    offset = 2
    for base_layers, layers in zip(scaled.base_arch.stages, scaled.arch.stages):
        depth = len(base_layers)
        sources += [(offset + min(j, depth - 1), j >= depth) for j in range(len(layers))]
        offset += depth
    sources.append((offset, False))
    assert len(sources) == len(model) and offset + 1 == len(base)
    with torch.no_grad():
        for dest, (src, added) in zip(model, sources):
            if not (added and _is_first_layer(scaled.base_arch, src)):  # a one-layer stage's layer changes the
                _copy_leading(dest, base[src])  # channel count and cannot be repeated: the added layer keeps its init
            if added:  # project BN scale and shift 0: the block outputs its input (residual)
                project_bn = dest.get_submodule("project.1")
                assert isinstance(project_bn, torch.nn.BatchNorm2d)
                project_bn.weight.zero_()
                project_bn.bias.zero_()
    return model.eval()


def _is_first_layer(base_arch: Arch, index: int) -> bool:
    """Whether block `index` of the base arch's static model is the first layer of a stage."""
    firsts, offset = set(), 2
    for layers in base_arch.stages:
        firsts.add(offset)
        offset += len(layers)
    return index in firsts


def _copy_leading(dest: nn.Module, src: nn.Module) -> None:
    """Copy every tensor of `src` into the leading part of `dest`'s (same module tree, dest at least as large), and zero
    the weights from `dest`'s new inputs (dim 1) to its old outputs (dim 0)."""
    src_state = src.state_dict()
    for name, tensor in dest.state_dict().items():
        source = src_state[name]
        if tensor.shape == source.shape:
            tensor.copy_(source)
            continue
        assert tensor.dim() == source.dim() and all(d >= s for d, s in zip(tensor.shape, source.shape)), name
        tensor[tuple(slice(0, s) for s in source.shape)] = source
        if tensor.dim() >= 2 and tensor.shape[1] > source.shape[1]:
            tensor[: source.shape[0], source.shape[1] :] = 0
