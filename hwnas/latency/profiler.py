"""`hwnas profile`: time every distinct block of a space (and calibration subnets) on a device and write the LUT.

Blocks and the calibration subnets are timed in the *same* interleaved passes, so the calibration sees the same machine
state as the rows it corrects; then, with the profile's `calib_passes`, the subnets get that many more passes among
themselves with the whole-model protocol validation uses. Why: the calibration's shared terms are fitted on a dozen
subnets per resolution, and a subnet's median over the table's few passes still varies by several percent from pass to
pass — noise the fit turns into wrong coefficients. Progress is checkpointed atomically to `<space>.partial.csv`
every few seconds; rerunning the same command after a crash or Ctrl-C re-times only what is missing, then removes the
partial file.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_path, atomic_write_json
from hwnas.errors import HwnasError
from hwnas.latency.calibrate import (
    CalibrationPoint,
    boundary_melems,
    calibration_archs,
    final_stage_mweights,
    fit_calibration,
)
from hwnas.latency.harness import PassRecord, Protocol, Timer, run_table_protocol
from hwnas.latency.lut import LatencyTable, save_lut, space_meta
from hwnas.latency.predictor import raw_sum_ms
from hwnas.latency.profiles import DeviceProfile, profile_timer
from hwnas.latency.runtime import Runner, export_many, make_runner
from hwnas.machine import machine_info
from hwnas.space import Arch, BlockSpec, SpaceSpec, distinct_blocks

__all__ = ["profile_space", "partial_paths", "SUBNET_PREFIX", "table_meta", "calibrate_table"]

log = logging.getLogger(__name__)
SUBNET_PREFIX = "subnet:"


def partial_paths(out_path: Path) -> tuple[Path, Path]:
    stem = out_path.name[: -len(".csv")] if out_path.name.endswith(".csv") else out_path.name
    return out_path.with_name(f"{stem}.partial.csv"), out_path.with_name(f"{stem}.partial.json")


def _read_partial(out_path: Path, header: Mapping[str, Any]) -> dict[str, list[PassRecord]]:
    import pandas as pd

    csv_path, json_path = partial_paths(out_path)
    if not csv_path.is_file() or not json_path.is_file():
        return {}
    try:
        if json.loads(json_path.read_text()) != json.loads(json.dumps(header)):
            log.warning("ignoring %s: it was made with another space, profile or resolutions", csv_path)
            return {}
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        log.warning("ignoring unreadable partial profile %s", csv_path)
        return {}
    done: dict[str, list[PassRecord]] = {}
    for rec in frame.itertuples(index=False):
        done.setdefault(str(rec.item), []).append(PassRecord(float(rec.median_ms), float(rec.p90_ms), int(rec.n)))
    log.info(
        "resuming from %s: %d passes of %d items already measured",
        csv_path.name,
        sum(map(len, done.values())),
        len(done),
    )
    return done


def _write_partial(out_path: Path, header: Mapping[str, Any], passes: Mapping[str, Sequence[PassRecord]]) -> None:
    csv_path, json_path = partial_paths(out_path)
    lines = ["item,median_ms,p90_ms,n"]  # items are LUT keys or "subnet:<arch>" (which has commas): quote them
    lines += [f'"{item}",{p.median_ms:.6f},{p.p90_ms:.6f},{p.n}' for item, recs in passes.items() for p in recs]
    atomic_write_json(json_path, header)
    with atomic_path(csv_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def table_meta(space: SpaceSpec, profile: DeviceProfile, resolutions: Sequence[int], **extra: Any) -> dict[str, Any]:
    info = machine_info()
    return {
        "device": profile.name,
        "space": space_meta(space),
        "resolutions": list(resolutions),
        "profile": profile.to_dict(),
        "versions": info["versions"],
        "cpu": info["cpu"],
        "cpu_signature": info["cpu_signature"],
        "date": info["date"],
        "machine": info,
        **extra,
    }


def calibrate_table(
    table: LatencyTable, space: SpaceSpec, measured: Mapping[Arch, tuple[float, float]]
) -> LatencyTable:
    """Fit the calibration from whole-subnet timings {arch: (p50 ms, cv)} and store it (with the points) in the meta."""
    points = [
        CalibrationPoint(
            str(a),
            a.resolution,
            raw_sum_ms(table, space, a),
            ms,
            cv,
            boundary_melems(space, a),
            final_stage_mweights(space, a),
        )
        for a, (ms, cv) in measured.items()
    ]
    if not points:
        return table.with_meta(calibration=None)
    cal = fit_calibration(points)
    fit_err = [
        abs(cal.apply(p.raw_sum_ms, p.resolution, p.boundary_melems, p.final_stage_mweights) / p.measured_ms - 1)
        for p in points
    ]
    raw_err = [abs(p.raw_sum_ms / p.measured_ms - 1) for p in points]
    meta = {
        **cal.to_meta(),
        "subnets": [
            {
                "arch": p.arch,
                "raw_sum_ms": round(p.raw_sum_ms, 6),
                "measured_ms": round(p.measured_ms, 6),
                "measured_cv": round(p.measured_cv, 5),
            }
            for p in points
        ],
        "fit_mape": sum(fit_err) / len(fit_err),
        "raw_mape": sum(raw_err) / len(raw_err),
    }
    return table.with_meta(calibration=meta)


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="model", disable=not progress, leave=False, dynamic_ncols=True)


def _finished() -> None:
    raise AssertionError("an item whose passes were all recorded is never run again")


def profile_space(
    space: SpaceSpec,
    profile: DeviceProfile,
    *,
    out_path: Path,
    resolutions: Sequence[int] | None = None,
    calib_subnets: int | None = None,
    runner: Runner | None = None,
    timer: Timer | None = None,
    rng: random.Random | None = None,
    resume: bool = True,
    progress: bool = False,
    export_workers: int = 2,
) -> LatencyTable:
    """Measure every distinct block of `space` at `resolutions` (+ calibration subnets), save and return the LUT."""

    from hwnas.blocks import build_block, build_model

    started = time.monotonic()
    resolutions = tuple(resolutions or space.resolutions)
    per_res = distinct_blocks(space, resolutions)
    specs: dict[str, BlockSpec] = {spec.key: spec for res in resolutions for spec in per_res[res]}
    k = profile.calib_subnets if calib_subnets is None else calib_subnets
    archs = calibration_archs(space, k, resolutions=resolutions)
    header = {
        "space": space_meta(space),
        "profile": profile.to_dict(),
        "resolutions": list(resolutions),
        "calibration_archs": [str(a) for a in archs],
    }
    done = _read_partial(out_path, header) if resume else {}
    runner = runner if runner is not None else make_runner(profile)
    protocol = Protocol.from_profile(profile)

    items: dict[str, tuple[Any, tuple[int, ...]]] = {}
    for key, spec in specs.items():
        items[key] = (spec, (profile.batch, spec.in_ch, spec.in_hw, spec.in_hw))
    for arch in archs:
        items[SUBNET_PREFIX + str(arch)] = (arch, (profile.batch, space.in_channels, arch.resolution, arch.resolution))
    subnet_items = [SUBNET_PREFIX + str(arch) for arch in archs]
    needed = {item: protocol.rounds for item in items}
    needed.update({item: protocol.rounds + profile.calib_passes for item in subnet_items})
    todo = [item for item in items if len(done.get(item, ())) < needed[item]]
    loaded = {}
    lowering: dict[str, Any] | None = None
    timer = timer or profile_timer(profile)
    rng = rng or random.Random(0)
    try:
        if hasattr(runner, "load_onnx"):  # ONNX runtimes: export in parallel worker processes
            jobs = [(space, *items[item]) for item in todo]
            with _bar(len(todo), "export", progress) as bar:
                for n, data in enumerate(export_many(jobs, workers=export_workers)):
                    loaded[todo[n]] = runner.load_onnx(data, items[todo[n]][1])
                    bar.update(1)
        else:
            models = {
                item: (
                    build_model(space, items[item][0])
                    if isinstance(items[item][0], Arch)
                    else build_block(items[item][0]),
                    items[item][1],
                )
                for item in todo
            }
            if hasattr(runner, "prepare"):  # runners that lower slowly: in worker processes, into their cache
                try:
                    lowering = runner.prepare(list(models.values()), progress=progress).to_meta()
                finally:
                    if hasattr(runner, "close"):
                        runner.close()  # lowering is over: no idle workers while timing
            with _bar(len(todo), "load", progress) as bar:
                for item, (model, shape) in models.items():
                    loaded[item] = runner.load(model, shape)
                    bar.update(1)
        export_s = time.monotonic() - started

        def run_of(item: str) -> Any:
            return loaded[item].run if item in loaded else _finished  # items not loaded have all their passes

        stats = run_table_protocol(
            {item: run_of(item) for item in specs},
            {item: run_of(item) for item in subnet_items},
            protocol,
            rng=rng,
            timer=timer,
            done=done,
            checkpoint=lambda passes: _write_partial(out_path, header, passes),
            progress=progress,
            desc=f"profile {space.name} on {profile.name}",
        )
    finally:
        for ld in loaded.values():
            ld.release()
    rows = {key: stats[key] for key in specs}
    seconds = time.monotonic() - started
    table = LatencyTable(
        rows,
        table_meta(
            space,
            profile,
            resolutions,
            build_seconds=round(seconds, 1),
            export_seconds=round(export_s, 1),
            lowering=lowering,
            resumed=bool(done),
        ),
        source=str(out_path),
    )
    measured = {a: (stats[SUBNET_PREFIX + str(a)].p50_ms, stats[SUBNET_PREFIX + str(a)].cv) for a in archs}
    table = calibrate_table(table, space, measured)
    save_lut(table, out_path)
    for path in partial_paths(out_path):
        path.unlink(missing_ok=True)
    log.info("wrote %s (%d rows, %d calibration subnets) in %.1f s", out_path, len(rows), len(archs), seconds)
    return LatencyTable(table.rows, {**table.meta, "schema": 1, "rows": len(rows)}, source=str(out_path))


def check_resolutions(space: SpaceSpec, resolutions: Sequence[int] | None) -> tuple[int, ...]:
    if not resolutions:
        return space.resolutions
    bad = [r for r in resolutions if r not in space.resolutions]
    if bad:
        raise HwnasError(f"resolution {bad[0]} is not in space {space.name} (choose from {list(space.resolutions)})")
    return tuple(sorted(set(resolutions)))
