"""Latency of exported files: measured with the device profile's protocol beside the LUT's drift references, and
predicted by the LUT of that device and space."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.space import Arch, SpaceSpec

__all__ = ["measure_exported", "drift_references", "lut_for", "predicted_ms_for", "rel_error"]

log = logging.getLogger(__name__)


def measure_exported(
    paths: Sequence[Path],
    input_shape: tuple[int, ...],
    profile: Any,
    *,
    space: SpaceSpec,
    references: Sequence[Any] = (),
) -> tuple[dict[Path, float], float | None]:
    """p50 ms of exported ONNX files, timed interleaved with the LUT's drift reference subnets (`hwnas.latency.drift`)
    when given: (ms per file, machine speed factor relative to the LUT's build, or None without references)."""
    import random

    from hwnas.blocks import build_model
    from hwnas.latency.drift import speed_factor
    from hwnas.latency.harness import Protocol, run_protocol
    from hwnas.latency.profiles import profile_timer
    from hwnas.latency.runtime import OrtRunner

    if profile.runtime != "onnxruntime":
        raise HwnasError(
            f"profile {profile.name} times runtime {profile.runtime}, not an ONNX file; "
            "use an onnxruntime profile such as cpu-ort-1t"
        )
    # The file is already fp32 or int8: the runner only has to load and run it.
    runner = OrtRunner(dataclasses.replace(profile, dtype="fp32"))
    loaded: dict[Any, Any] = {("file", p): runner.load_onnx(p.read_bytes(), input_shape) for p in paths}
    for ref in references:
        shape = (profile.batch, space.in_channels, ref.arch.resolution, ref.arch.resolution)
        loaded[("ref", ref.arch)] = runner.load(build_model(space, ref.arch), shape)
    try:
        stats = run_protocol(
            {k: ld.run for k, ld in loaded.items()},
            Protocol.from_profile(profile, warmup_s=min(profile.warmup_s, 2.0)),
            rng=random.Random(0),
            timer=profile_timer(profile),
        )
    finally:
        for ld in loaded.values():
            ld.release()
    ref_ms = {key[1]: st.p50_ms for key, st in stats.items() if key[0] == "ref"}
    speed = speed_factor(references, ref_ms) if ref_ms else None
    return {key[1]: st.p50_ms for key, st in stats.items() if key[0] == "file"}, speed


def drift_references(table: Any, space: SpaceSpec, arch: Arch, *, profile: Any) -> tuple[Any, ...]:
    """The LUT's reference subnets for the speed factor: fp32 local tables only (int8 tables were timed quantized,
    remote ones elsewhere), at the arch's resolution when the table has calibration subnets there."""
    from hwnas.latency.drift import reference_archs

    if table is None or profile.dtype != "fp32" or profile.remote:
        return ()
    return reference_archs(table, resolutions=(arch.resolution,), n=4) or reference_archs(
        table, resolutions=table.resolutions or space.resolutions, n=4
    )


def lut_for(space: SpaceSpec, *, lut: Path | None, target: str) -> tuple[Any, str | None]:
    """(LUT, its path) for the latency profile `target` and `space`, or (None, None) when no table exists for them (a
    warning, not an error: the export still runs, with the predicted latency left empty)."""
    from hwnas.latency.lut import load_lut, lut_path
    from hwnas.latency.profiles import data_root

    path = lut if lut is not None else lut_path(data_root() / "latency_tables", Path(target).stem, space)
    if lut is None and not path.is_file():
        log.warning(
            "no LUT at %s: predicted latency left empty (run 'hwnas profile --device %s --space %s')",
            path,
            target,
            space.name,
        )
        return None, None
    table = load_lut(path, space=space)
    if table.device != Path(target).stem:
        raise HwnasError(
            f"LUT {path} was measured on {table.device!r}, but latency is measured on {target!r}; "
            f"pass --target {table.device} or a LUT for {target}"
        )
    return table, str(path)


def predicted_ms_for(space: SpaceSpec, arch: Arch, *, lut: Path | None, target: str) -> tuple[float | None, str | None]:
    """(calibrated LUT prediction, LUT path), or (None, None) when no table exists for this profile and space."""
    from hwnas.latency.predictor import predict_ms

    table, path = lut_for(space, lut=lut, target=target)
    return (None, None) if table is None else (predict_ms(table, space, arch), path)


def rel_error(predicted: float | None, measured: float | None) -> float | None:
    return None if not (predicted and measured) else round(predicted / measured - 1, 4)
