"""The timing protocol behind every latency hwnas measures, here and on a device.

Why this shape: on shared machines the same model drifts over minutes by much more than back-to-back runs of it differ.
So nothing is timed once. After a global warm-up over every item (caches, clocks, allocator arenas), the
items are timed in several interleaved passes, each pass in a fresh random order, so slow phases of the machine hit all
items alike instead of biasing whichever block happened to run then. A slow phase of the whole machine lasts seconds,
about as long as a pass over a table's blocks, so it slows every item of a pass alike: each pass's common speed (the
median over its items of item-in-this-pass / item-over-all-passes) is divided out before, per item, the median across
passes is kept. Items whose across-pass spread (CV) is still high get extra passes. Timer and runner are arguments, so
tests drive the protocol with fakes and real runs use `time.perf_counter_ns` (or the thread's CPU clock) and a real
runtime session.

Why one dependency-free file (stdlib + numpy, no hwnas, no torch): `hwnas.latency.harness` imports it, and
`hwnas bundle` copies this very file next to the device scripts (`hwnas/latency/device/`), so a phone times its table
with the code `hwnas profile` runs here, not with a copy that can drift.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
import typing
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "TimingStats",
    "PassRecord",
    "Protocol",
    "ProtocolSource",
    "Timer",
    "CLOCKS",
    "MIN_ITEMS_PER_PASS_SPEED",
    "CALIB_WARMUP_S",
    "clock_timer",
    "pass_speeds",
    "stats_from_passes",
    "split_half_p50",
    "for_whole_models",
    "run_passes",
    "run_protocol",
    "run_table_protocol",
]

Timer = Callable[[], int]  # nanoseconds, monotonic (time.perf_counter_ns)
K = TypeVar("K", bound=Hashable)
CLOCKS: tuple[str, ...] = ("thread", "wall")
MIN_ITEMS_PER_PASS_SPEED = 8  # fewer items in a pass: its median ratio is itself noise, so the pass keeps speed 1
CALIB_WARMUP_S = 1.0  # global warm-up before the calibration subnets' own passes (the machine is warm by then)


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


class ProtocolSource(typing.Protocol):
    """Anything carrying the protocol fields of a device profile (`hwnas.latency.profiles.DeviceProfile`)."""

    @property
    def warmup_s(self) -> float: ...
    @property
    def warmup(self) -> int: ...
    @property
    def rounds(self) -> int: ...
    @property
    def repeats(self) -> int: ...
    @property
    def max_cv(self) -> float: ...
    @property
    def remeasure(self) -> int: ...
    @property
    def calib_passes(self) -> int: ...
    @property
    def clock(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Protocol:
    """How items are timed: `warmup_s` of global warm-up, then `rounds` interleaved passes of `warmup` untimed and
    `repeats` timed runs per item; items whose CV exceeds `max_cv` get up to `remeasure` extra passes. A table's
    calibration subnets get `calib_passes` more passes among themselves (`run_table_protocol`). `clock` is the default
    timer: "thread" (the calling thread's CPU time, single-threaded CPU inference only) or "wall"."""

    warmup_s: float = 5.0
    warmup: int = 3
    rounds: int = 5
    repeats: int = 10
    max_cv: float = 0.03
    remeasure: int = 3
    checkpoint_s: float = 2.0
    calib_passes: int = 0
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock {self.clock!r} is not one of {', '.join(CLOCKS)}")
        if self.rounds < 1 or self.repeats < 1 or min(self.warmup, self.remeasure, self.calib_passes) < 0:
            raise ValueError(f"rounds and repeats must be >= 1, warmup, remeasure and calib_passes >= 0: {self}")

    @classmethod
    def from_profile(cls, profile: ProtocolSource, *, warmup_s: float | None = None) -> Protocol:
        return cls(
            warmup_s=profile.warmup_s if warmup_s is None else warmup_s,
            warmup=profile.warmup,
            rounds=profile.rounds,
            repeats=profile.repeats,
            max_cv=profile.max_cv,
            remeasure=profile.remeasure,
            calib_passes=profile.calib_passes,
            clock=profile.clock,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Protocol:
        """The protocol fields of `data` (a bundle manifest's "protocol", or a whole profile dict); others ignored."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def clock_timer(clock: str) -> Timer:
    """The nanosecond clock named by a profile's `clock`."""
    if clock not in CLOCKS:
        raise ValueError(f"clock {clock!r} is not one of {', '.join(CLOCKS)}")
    return time.thread_time_ns if clock == "thread" else time.perf_counter_ns


def pass_speeds(
    passes: Mapping[Any, Sequence[PassRecord]], *, min_items: int = MIN_ITEMS_PER_PASS_SPEED
) -> tuple[float, ...]:
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
        ratios = [
            recs[i].median_ms / medians[key] for key, recs in passes.items() if len(recs) > i and medians[key] > 0
        ]
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
    return TimingStats(
        p50_ms=float(np.median(medians)), p90_ms=float(np.median(p90s)), cv=cv, n=sum(p.n for p in passes)
    )


def split_half_p50(passes: Sequence[PassRecord], speeds: Sequence[float] = ()) -> tuple[float, float]:
    """The p50 of the even-numbered and of the odd-numbered passes, each divided by its pass speed: two measurements of
    one item, each half as long as the whole, taken interleaved. How well many items' halves agree (Kendall τ) is the
    repeatability of the measurement itself — the noise floor any predictor graded against it is scored on."""
    if len(passes) < 2:
        raise ValueError("a split-half estimate needs at least 2 passes")
    scale = [speeds[i] if i < len(speeds) and speeds[i] > 0 else 1.0 for i in range(len(passes))]
    medians = [p.median_ms / s for p, s in zip(passes, scale)]
    return float(np.median(medians[0::2])), float(np.median(medians[1::2]))


def for_whole_models(base: Protocol, *, warmup_s: float, passes: int | None = None) -> Protocol:
    """The protocol for whole subnets (each 10–100× a block): `passes` interleaved passes (default 3 × `base.rounds`),
    each of (1 + repeats/3) runs, with `base`'s CV limit and clock.

    Whole models are long enough that a single run is already a stable sample, so few runs per pass; what limits a
    fidelity check is the drift *between* passes, so there are many of them. With more passes a measurement agrees
    better with a repeat of itself (Kendall τ), and the LUT's τ against it rises with it — with few passes a validation
    grades the noise of its own ground truth, not the table.
    """
    if passes is not None and passes < 2:
        raise ValueError(f"whole-model timing needs at least 2 timing passes per subnet, got {passes}")
    return Protocol(
        warmup_s=warmup_s,
        warmup=1,
        rounds=passes or 3 * max(1, base.rounds),
        repeats=max(3, base.repeats // 3),
        max_cv=base.max_cv,
        remeasure=min(1, base.remeasure),
        checkpoint_s=base.checkpoint_s,
        clock=base.clock,
    )


def _time_item(run: Callable[[], object], protocol: Protocol, timer: Timer) -> PassRecord:
    for _ in range(protocol.warmup):
        run()
    samples = np.empty(protocol.repeats, dtype=np.float64)
    for i in range(protocol.repeats):
        start = timer()
        run()
        samples[i] = (timer() - start) / 1e6
    return PassRecord(float(np.median(samples)), float(np.percentile(samples, 90)), protocol.repeats)


def _global_warmup(
    items: Mapping[K, Callable[[], object]], protocol: Protocol, *, rng: random.Random, timer: Timer
) -> None:
    """Run every item in random order until `warmup_s` has passed (at least once each, at most 10,000 sweeps)."""
    keys = list(items)
    start = timer()
    for _ in range(10_000):
        rng.shuffle(keys)
        for key in keys:
            items[key]()
        if (timer() - start) / 1e9 >= protocol.warmup_s:
            return


class _StderrBar:
    """What stands in for tqdm where it is not installed (a device): a counter on stderr, updated every 20 items."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, 0

    def update(self, n: int) -> None:
        self.n += n
        if self.enabled and (self.n % 20 == 0 or self.n >= self.total):
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.n:
            sys.stderr.write("\n")


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _StderrBar(total, desc, enabled)
    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, leave=False, dynamic_ncols=True)


def run_passes(
    items: Mapping[K, Callable[[], object]],
    protocol: Protocol,
    *,
    rng: random.Random,
    timer: Timer | None = None,
    done: Mapping[K, Sequence[PassRecord]] | None = None,
    checkpoint: Callable[[Mapping[K, Sequence[PassRecord]]], None] | None = None,
    progress: bool = False,
    desc: str = "timing",
) -> dict[K, list[PassRecord]]:
    """Warm up, then time every item in `protocol.rounds` interleaved passes (+ re-measured passes for noisy items) and
    return each item's passes; `run_protocol` turns them into stats. Arguments as for `run_protocol`."""
    timer = timer or clock_timer(protocol.clock)
    passes: dict[K, list[PassRecord]] = {key: list((done or {}).get(key, ()))[: protocol.rounds] for key in items}
    todo = sum(max(0, protocol.rounds - len(p)) for p in passes.values())
    bar = _progress_bar(todo, desc, progress)
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
    return passes


def run_protocol(
    items: Mapping[K, Callable[[], object]],
    protocol: Protocol,
    *,
    rng: random.Random,
    timer: Timer | None = None,
    done: Mapping[K, Sequence[PassRecord]] | None = None,
    checkpoint: Callable[[Mapping[K, Sequence[PassRecord]]], None] | None = None,
    progress: bool = False,
    desc: str = "timing",
) -> dict[K, TimingStats]:
    """Time every item with the robust protocol and return its stats.

    `timer` defaults to the protocol's clock (`clock_timer`). `done` holds passes already measured (a resumed profile):
    items keep them and only get the passes they miss. `checkpoint` is called with all passes so far every
    `checkpoint_s` seconds and at the end of each pass. `progress` shows a bar (tqdm where installed).
    """
    passes = run_passes(
        items, protocol, rng=rng, timer=timer, done=done, checkpoint=checkpoint, progress=progress, desc=desc
    )
    speeds = pass_speeds(passes)
    return {key: stats_from_passes(passes[key], speeds) for key in items}


def run_table_protocol(
    blocks: Mapping[K, Callable[[], object]],
    subnets: Mapping[K, Callable[[], object]],
    protocol: Protocol,
    *,
    rng: random.Random,
    timer: Timer | None = None,
    done: Mapping[K, Sequence[PassRecord]] | None = None,
    checkpoint: Callable[[Mapping[K, Sequence[PassRecord]]], None] | None = None,
    progress: bool = False,
    desc: str = "timing",
) -> dict[K, TimingStats]:
    """Time a latency table: its blocks and calibration subnets in the same interleaved passes, then
    `protocol.calib_passes` more passes among the subnets alone with the whole-model protocol (`for_whole_models`);
    each group's pass speeds are divided out separately. Returns stats for every block and subnet.

    Why: the calibration sees the same machine state as the rows it corrects, and its shared terms, fitted on a dozen
    subnets per resolution, need subnet medians steadier than the table's few passes give. `done`/`checkpoint` resume
    as in `run_protocol`; an item whose passes are all in `done` is never run.
    """
    timer = timer or clock_timer(protocol.clock)
    runs = {**blocks, **subnets}
    passes: dict[K, list[PassRecord]] = {key: list((done or {}).get(key, ())) for key in runs}

    def save(new: Mapping[K, Sequence[PassRecord]]) -> None:
        passes.update({key: list(recs) for key, recs in new.items()})
        if checkpoint is not None:
            checkpoint(passes)

    together = {key: run for key, run in runs.items() if len(passes[key]) < protocol.rounds}
    if together:
        save(
            run_passes(
                together,
                protocol,
                rng=rng,
                timer=timer,
                done={k: passes[k] for k in together},
                checkpoint=save,
                progress=progress,
                desc=desc,
            )
        )
    whole_rounds = protocol.rounds + protocol.calib_passes
    if protocol.calib_passes and subnets:
        for key in set(subnets) & set(together):  # a subnet's re-measured passes would misalign the pass indices
            passes[key] = passes[key][: protocol.rounds]
        extra = {key: run for key, run in subnets.items() if len(passes[key]) < whole_rounds}
        if extra:
            whole = for_whole_models(protocol, warmup_s=min(CALIB_WARMUP_S, protocol.warmup_s), passes=whole_rounds)
            save(
                run_passes(
                    extra,
                    whole,
                    rng=rng,
                    timer=timer,
                    done={k: passes[k] for k in extra},
                    checkpoint=save,
                    progress=progress,
                    desc=f"{desc}: calibration subnets",
                )
            )
    block_speeds = pass_speeds({key: passes[key] for key in blocks})
    subnet_speeds = pass_speeds({key: passes[key] for key in subnets})
    return {key: stats_from_passes(passes[key], subnet_speeds if key in subnets else block_speeds) for key in runs}
