"""The timing protocol shared by block profiling, calibration, validation and export, bound to hwnas' device profiles.

The protocol itself (warm-up, interleaved passes, per-pass speeds, medians, re-measuring, calibration passes) lives in
`hwnas.latency.protocol`, a dependency-free file that `hwnas bundle` also copies onto devices; it is re-exported here
unchanged, so `hwnas profile` and the device scripts run the same functions. This module adds what needs hwnas: the
protocol from a `DeviceProfile`, and timing loaded programs (`time_loaded`, `measure_block`, `measure_model_ms`).
"""

from __future__ import annotations

import math
import random
from typing import Any

from hwnas.errors import HwnasError
from hwnas.latency.profiles import DeviceProfile, profile_timer
from hwnas.latency.protocol import (
    MIN_ITEMS_PER_PASS_SPEED,
    PassRecord,
    Protocol,
    Timer,
    TimingStats,
    for_whole_models,
    pass_speeds,
    run_protocol,
    run_table_protocol,
    split_half_p50,
    stats_from_passes,
)

__all__ = [
    "TimingStats",
    "PassRecord",
    "Protocol",
    "Timer",
    "run_protocol",
    "run_table_protocol",
    "stats_from_passes",
    "pass_speeds",
    "split_half_p50",
    "MIN_ITEMS_PER_PASS_SPEED",
    "whole_model_protocol",
    "measure_block",
    "time_loaded",
    "measure_model_ms",
]


def whole_model_protocol(profile: DeviceProfile, *, warmup_s: float, passes: int | None = None) -> Protocol:
    """The profile's protocol for hundreds of whole subnets (`hwnas.latency.protocol.for_whole_models`): `passes`
    interleaved passes (default 3 × the profile's), each of (1 + repeats/3) runs."""
    if passes is not None and passes < 2:
        raise HwnasError(f"whole-model timing needs at least 2 timing passes per subnet, got {passes}")
    return for_whole_models(Protocol.from_profile(profile), warmup_s=warmup_s, passes=passes)


def measure_block(
    spec: object,
    in_shape: tuple[int, ...],
    *,
    runner: object,
    timer: Timer | None = None,
    rng: random.Random | None = None,
) -> TimingStats:
    """Time one block alone (export → session → protocol). `runner` is a `hwnas.latency.runtime.Runner`."""
    from hwnas.blocks import build_block

    profile: DeviceProfile = runner.profile  # type: ignore[attr-defined]
    loaded = runner.load(build_block(spec), in_shape)  # type: ignore[attr-defined,arg-type]
    return time_loaded(loaded, profile, warmup_s=min(profile.warmup_s, 1.0), timer=timer, rng=rng)


def time_loaded(
    loaded: Any,
    profile: DeviceProfile,
    *,
    warmup_s: float | None = None,
    timer: Timer | None = None,
    rng: random.Random | None = None,
) -> TimingStats:
    """Time one loaded program (`hwnas.latency.runtime.Loaded`) with the profile's protocol and clock, then release it.

    The one place where single-program timing happens: blocks, whole models, exported ONNX files and .pte programs.
    The global warm-up defaults to the profile's, capped at 2 s (one program warms up faster than a whole table).
    """
    try:
        protocol = Protocol.from_profile(profile, warmup_s=min(profile.warmup_s, 2.0) if warmup_s is None else warmup_s)
        return run_protocol(
            {"item": loaded.run}, protocol, rng=rng or random.Random(0), timer=timer or profile_timer(profile)
        )["item"]
    finally:
        loaded.release()


def measure_model_ms(
    model: object,
    input_shape: tuple[int, ...],
    profile: DeviceProfile,
    *,
    runner: object | None = None,
    timer: Timer | None = None,
    rng: random.Random | None = None,
    warmup_s: float | None = None,
) -> TimingStats:
    """Whole-model latency on `profile` with the same protocol as the LUT blocks (used by export and validate).

    The global warm-up defaults to the profile's, capped at 2 s: one model warms up faster than a whole table. The clock
    is the profile's (`DeviceProfile.clock`) unless `timer` is given.
    """
    from hwnas.latency.runtime import make_runner

    runner = runner if runner is not None else make_runner(profile)
    loaded = runner.load(model, input_shape)  # type: ignore[attr-defined]
    stats = time_loaded(loaded, profile, warmup_s=warmup_s, timer=timer, rng=rng)
    if not math.isfinite(stats.p50_ms):
        raise AssertionError("non-finite timing")
    return stats
