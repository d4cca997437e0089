"""The timing protocol shared by block profiling, calibration, validation and export.

Why this shape: on shared machines the same model drifts over minutes by much more than back-to-back runs of it differ.
So nothing is timed once. After a global warm-up over every item (caches, clocks, allocator arenas), the
items are timed in several interleaved passes, each pass in a fresh random order, so slow phases of the machine hit all
items alike instead of biasing whichever block happened to run then. A slow phase of the whole machine lasts seconds,
about as long as a pass over a table's blocks, so it slows every item of a pass alike: each pass's common speed (the
median over its items of item-in-this-pass / item-over-all-passes) is divided out before, per item, the median across
passes is kept. Items whose across-pass spread (CV) is still high get extra passes. Timer and runner are arguments, so
tests drive the protocol with fakes and real runs use `time.perf_counter_ns` and a real runtime session.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.profiles import DeviceProfile, profile_timer

__all__ = ["TimingStats", "PassRecord", "Protocol", "Timer", "run_protocol", "stats_from_passes", "pass_speeds",
           "split_half_p50", "MIN_ITEMS_PER_PASS_SPEED", "whole_model_protocol", "measure_block", "time_loaded",
           "measure_model_ms"]

Timer = Callable[[], int]  # nanoseconds, monotonic (time.perf_counter_ns)
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class TimingStats:
    """Latency of one item: median (of per-pass medians), 90th percentile, across-pass CV, number of timed runs."""

    p50_ms: float
    p90_ms: float
    cv: float
    n: int


@dataclass(frozen=True, slots=True)
class PassRecord:
    """What one timed pass left for one item (kept so an interrupted profile can resume from it)."""

    median_ms: float
    p90_ms: float
    n: int


@dataclass(frozen=True, slots=True)
class Protocol:
    warmup_s: float = 5.0
    warmup: int = 3
    rounds: int = 5
    repeats: int = 10
    max_cv: float = 0.03
    remeasure: int = 3
    checkpoint_s: float = 2.0

    @classmethod
    def from_profile(cls, profile: DeviceProfile, *, warmup_s: float | None = None) -> Protocol:
        return cls(warmup_s=profile.warmup_s if warmup_s is None else warmup_s, warmup=profile.warmup,
                   rounds=profile.rounds, repeats=profile.repeats, max_cv=profile.max_cv, remeasure=profile.remeasure)


MIN_ITEMS_PER_PASS_SPEED = 8  # fewer items in a pass: its median ratio is itself noise, so the pass keeps speed 1


def pass_speeds(passes: Mapping[Any, Sequence[PassRecord]], *,
                min_items: int = MIN_ITEMS_PER_PASS_SPEED) -> tuple[float, ...]:
    """How slow the machine ran during each pass index, relative to the whole run: the median, over the items timed in
    that pass, of the item's pass median / its median over all its passes (1.0 for passes with < `min_items` items).

    Why: a slow phase of the machine slows every item of the passes it hits. Per-pass medians alone carry that into
    the rows, so tables built back to back rank subnets (by their block sums) less alike whenever such a phase hit some
    passes; with each pass's speed divided out first, the same passes give tables that agree more closely.
    A pass index is one interleaved sweep within one `run_protocol` call; passes resumed from an interrupted run line up
    only roughly, which costs accuracy, not correctness.
    """
    medians = {key: float(np.median([p.median_ms for p in recs])) for key, recs in passes.items() if recs}
    depth = max((len(recs) for recs in passes.values()), default=0)
    speeds = []
    for i in range(depth):
        ratios = [recs[i].median_ms / medians[key] for key, recs in passes.items()
                  if len(recs) > i and medians[key] > 0]
        speeds.append(float(np.median(ratios)) if len(ratios) >= min_items else 1.0)
    return tuple(speeds)


def stats_from_passes(passes: Sequence[PassRecord], speeds: Sequence[float] = ()) -> TimingStats:
    """Combine passes: each divided by its pass's speed (`pass_speeds`; none given: 1), then p50 = median of pass
    medians (robust to one slow pass), CV of the pass medians (what drift is left)."""
    scale = np.array([speeds[i] if i < len(speeds) and speeds[i] > 0 else 1.0 for i in range(len(passes))])
    medians = np.array([p.median_ms for p in passes], dtype=np.float64) / scale
    p90s = np.array([p.p90_ms for p in passes], dtype=np.float64) / scale
    mean = float(medians.mean())
    cv = float(medians.std() / mean) if len(medians) > 1 and mean > 0 else 0.0
    return TimingStats(p50_ms=float(np.median(medians)), p90_ms=float(np.median(p90s)), cv=cv,
                       n=sum(p.n for p in passes))


def split_half_p50(passes: Sequence[PassRecord], speeds: Sequence[float] = ()) -> tuple[float, float]:
    """The p50 of the even-numbered and of the odd-numbered passes, each divided by its pass speed: two measurements of
    one item, each half as long as the whole, taken interleaved. How well many items' halves agree (Kendall τ) is the
    repeatability of the measurement itself — the noise floor any predictor graded against it is scored on."""
    if len(passes) < 2:
        raise ValueError("a split-half estimate needs at least 2 passes")
    scale = [speeds[i] if i < len(speeds) and speeds[i] > 0 else 1.0 for i in range(len(passes))]
    medians = [p.median_ms / s for p, s in zip(passes, scale)]
    return float(np.median(medians[0::2])), float(np.median(medians[1::2]))


def whole_model_protocol(profile: DeviceProfile, *, warmup_s: float, passes: int | None = None) -> Protocol:
    """The protocol for hundreds of whole subnets (each 10–100× a block): `passes` interleaved passes (default 3 × the
    profile's), each of (1 + repeats/3) runs.

    Whole models are long enough that a single run is already a stable sample, so few runs per pass; what limits a
    fidelity check is the drift *between* passes, so there are many of them. With more passes a measurement agrees
    better with a repeat of itself (Kendall τ), and the LUT's τ against it rises with it — with few passes a validation
    grades the noise of its own ground truth, not the table.
    """
    if passes is not None and passes < 2:
        raise HwnasError(f"whole-model timing needs at least 2 timing passes per subnet, got {passes}")
    return Protocol(warmup_s=warmup_s, warmup=1, rounds=passes or 3 * max(1, profile.rounds),
                    repeats=max(3, profile.repeats // 3), max_cv=profile.max_cv, remeasure=min(1, profile.remeasure))


def _time_item(run: Callable[[], object], protocol: Protocol, timer: Timer) -> PassRecord:
    for _ in range(protocol.warmup):
        run()
    samples = np.empty(protocol.repeats, dtype=np.float64)
    for i in range(protocol.repeats):
        start = timer()
        run()
        samples[i] = (timer() - start) / 1e6
    return PassRecord(float(np.median(samples)), float(np.percentile(samples, 90)), protocol.repeats)


def _global_warmup(items: Mapping[K, Callable[[], object]], protocol: Protocol, *, rng: random.Random,
                   timer: Timer) -> None:
    """Run every item in random order until `warmup_s` has passed (at least once each, at most 10,000 sweeps)."""
    keys = list(items)
    start = timer()
    for _ in range(10_000):
        rng.shuffle(keys)
        for key in keys:
            items[key]()
        if (timer() - start) / 1e9 >= protocol.warmup_s:
            return


def run_protocol(
    items: Mapping[K, Callable[[], object]],
    protocol: Protocol,
    *,
    rng: random.Random,
    timer: Timer = time.perf_counter_ns,
    done: Mapping[K, Sequence[PassRecord]] | None = None,
    checkpoint: Callable[[Mapping[K, Sequence[PassRecord]]], None] | None = None,
    progress: bool = False,
    desc: str = "timing",
) -> dict[K, TimingStats]:
    """Time every item with the robust protocol and return its stats.

    `done` holds passes already measured (a resumed profile): items keep them and only get the passes they miss.
    `checkpoint` is called with all passes so far every `checkpoint_s` seconds and at the end of each pass.
    """
    from tqdm import tqdm

    passes: dict[K, list[PassRecord]] = {key: list((done or {}).get(key, ()))[: protocol.rounds] for key in items}
    todo = sum(max(0, protocol.rounds - len(p)) for p in passes.values())
    bar = tqdm(total=todo, desc=desc, unit="item", disable=not progress, leave=False, dynamic_ncols=True)
    try:
        if todo or protocol.remeasure:
            _global_warmup(items, protocol, rng=rng, timer=timer)
        last_save = timer()

        def sweep(keys: list[K]) -> None:
            nonlocal last_save
            rng.shuffle(keys)
            for key in keys:
                passes[key].append(_time_item(items[key], protocol, timer))
                bar.update(1)
                if checkpoint is not None and (timer() - last_save) / 1e9 >= protocol.checkpoint_s:
                    checkpoint(passes)
                    last_save = timer()
            if checkpoint is not None:
                checkpoint(passes)
                last_save = timer()

        for round_idx in range(protocol.rounds):
            pending = [key for key in items if len(passes[key]) <= round_idx]
            if pending:
                sweep(pending)
        for _ in range(protocol.remeasure):
            speeds = pass_speeds(passes)
            noisy = [key for key in items if stats_from_passes(passes[key], speeds).cv > protocol.max_cv]
            if not noisy:
                break
            bar.total += len(noisy)
            sweep(noisy)
    finally:
        bar.close()
    speeds = pass_speeds(passes)
    return {key: stats_from_passes(passes[key], speeds) for key in items}


def measure_block(spec: object, in_shape: tuple[int, ...], *, runner: object, timer: Timer | None = None,
                  rng: random.Random | None = None) -> TimingStats:
    """Time one block alone (export → session → protocol). `runner` is a `hwnas.latency.runtime.Runner`."""
    from hwnas.blocks import build_block

    profile: DeviceProfile = runner.profile  # type: ignore[attr-defined]
    loaded = runner.load(build_block(spec), in_shape)  # type: ignore[attr-defined,arg-type]
    return time_loaded(loaded, profile, warmup_s=min(profile.warmup_s, 1.0), timer=timer, rng=rng)


def time_loaded(loaded: Any, profile: DeviceProfile, *, warmup_s: float | None = None, timer: Timer | None = None,
                rng: random.Random | None = None) -> TimingStats:
    """Time one loaded program (`hwnas.latency.runtime.Loaded`) with the profile's protocol and clock, then release it.

    The one place where single-program timing happens: blocks, whole models, exported ONNX files and .pte programs.
    The global warm-up defaults to the profile's, capped at 2 s (one program warms up faster than a whole table).
    """
    try:
        protocol = Protocol.from_profile(profile, warmup_s=min(profile.warmup_s, 2.0) if warmup_s is None else warmup_s)
        return run_protocol({"item": loaded.run}, protocol, rng=rng or random.Random(0),
                            timer=timer or profile_timer(profile))["item"]
    finally:
        loaded.release()


def measure_model_ms(model: object, input_shape: tuple[int, ...], profile: DeviceProfile, *,
                     runner: object | None = None, timer: Timer | None = None,
                     rng: random.Random | None = None, warmup_s: float | None = None) -> TimingStats:
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
