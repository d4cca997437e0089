"""EfficientNet compound scaling of a found arch to fill a larger budget.

Depth, width and resolution grow together as ``d·α^φ``, ``w·β^φ``, ``r·γ^φ`` with ``α·β²·γ² ≈ 2`` (Tan & Le, 2019:
α = 1.2, β = 1.1, γ = 1.15), so each unit of φ roughly doubles the FLOPs. A scaled arch leaves the trained space (wider
channels, deeper stages, new resolutions): its latency comes from LUT rows for *new* block signatures and its accuracy is
unknown until it is trained. This module is honest about both: every missing row is named together with the
`hwnas profile` command that measures it, and the accuracy of a scaled arch is reported as unknown (NaN).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwnas.errors import HwnasError
from hwnas.space import Arch, SpaceSpec, blocks_of, get_space, with_io

if TYPE_CHECKING:
    from hwnas.latency.lut import LatencyTable

__all__ = ["ScaleConfig", "ScaledArch", "compound_scale", "scale_to_budget"]


@dataclass(frozen=True, slots=True)
class ScaleConfig:
    alpha: float = 1.2    # depth
    beta: float = 1.1     # width
    gamma: float = 1.15   # resolution
    phis: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
    resolution_step: int = 4

    def __post_init__(self) -> None:
        if min(self.alpha, self.beta, self.gamma) < 1.0 or not self.phis or min(self.phis) <= 0:
            raise HwnasError("compound scaling needs alpha, beta, gamma >= 1 and positive phis")


@dataclass(frozen=True, slots=True)
class ScaledArch:
    phi: float
    space: SpaceSpec
    arch: Arch
    predicted_ms: float


def compound_scale(space: SpaceSpec, arch: Arch, phi: float, *, cfg: ScaleConfig) -> tuple[SpaceSpec, Arch]:
    """The scaled arch and the (widened, deepened, higher-resolution) space it lives in. New layers repeat the stage's last."""
    width = round(space.width * cfg.beta**phi, 3)
    base = with_io(get_space(space.name, width=width), in_channels=space.in_channels, num_classes=space.num_classes)
    step = cfg.resolution_step
    res = max(step, int(round(arch.resolution * cfg.gamma**phi / step)) * step)
    stages = []
    new_stage_specs = []
    for layers, stage in zip(arch.stages, base.stages):
        depth = max(len(layers), math.ceil(len(layers) * cfg.alpha**phi))
        stages.append(layers + (layers[-1],) * (depth - len(layers)))
        new_stage_specs.append(dataclasses.replace(stage, depths=tuple(sorted(set(stage.depths) | {depth}))))
    scaled_space = dataclasses.replace(base, stages=tuple(new_stage_specs),
                                       resolutions=tuple(sorted(set(base.resolutions) | {res})))
    return scaled_space, Arch(res, tuple(stages))


def _scaled_ms(table: LatencyTable, space: SpaceSpec, arch: Arch) -> tuple[float, list[str]]:
    """Calibrated latency from raw rows (nearest calibration), or NaN and the keys the table lacks."""
    from hwnas.latency.calibrate import Calibration, boundary_melems, final_stage_mweights

    keys = [b.key for b in blocks_of(space, arch)]
    missing = [k for k in dict.fromkeys(keys) if k not in table]
    if missing:
        return float("nan"), missing
    raw = sum(table.ms(k) for k in keys)
    cal = Calibration.from_meta(table.meta.get("calibration"))
    return cal.apply(raw, arch.resolution, boundary_melems(space, arch), final_stage_mweights(space, arch)), []


def scale_to_budget(
    table: LatencyTable, space: SpaceSpec, arch: Arch, *, budget_ms: float, cfg: ScaleConfig
) -> tuple[ScaledArch, float]:
    """The largest compound-scaled version of `arch` (over `cfg.phis`) whose predicted latency fits `budget_ms`.

    Returns it and the search seconds. Raises naming the rows to profile when the table cannot price a scaled arch.
    """
    start = time.perf_counter()
    best: ScaledArch | None = None
    for phi in sorted(cfg.phis):
        scaled_space, scaled = compound_scale(space, arch, phi, cfg=cfg)
        ms, missing = _scaled_ms(table, scaled_space, scaled)
        if missing:
            raise HwnasError(
                f"LUT {table.source} lacks {len(missing)} rows for the arch scaled by phi={phi} (width "
                f"{scaled_space.width}, resolution {scaled.resolution}), e.g. '{missing[0]}'; profile them with "
                f"'hwnas profile --device {table.device} --space {space.name} --width {scaled_space.width} "
                f"--resolutions {scaled.resolution}' and merge the rows, or use --strategy evolution"
            )
        if ms > budget_ms:
            break
        best = ScaledArch(phi, scaled_space, scaled, ms)
    if best is None:
        raise HwnasError(f"even the smallest scaling (phi={min(cfg.phis)}) of {arch} exceeds {budget_ms:g} ms; "
                         f"search within the space instead (--strategy evolution)")
    return best, time.perf_counter() - start

