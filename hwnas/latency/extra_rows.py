"""Rows a LUT lacks, timed on demand on the table's own device and put on the table's time base.

Why: a compound-scaled arch (`hwnas.search.scale`) leaves the space a table was profiled for — wider channels, another
resolution — so it needs block signatures no `hwnas profile` run produced. They are timed here with the same harness,
protocol, runner and clock as `hwnas profile` (`run_protocol` with the table's stored device profile), never with a
protocol of their own.

Time base: the same block timed minutes or days apart differs by 5–20% on a shared machine (clock, caches, neighbours),
so timings taken now are not on the time base of a table built earlier. A few of the table's own rows are therefore
timed again as references, interleaved in the same passes as the new rows, so a slow or fast phase hits both alike.
Each reference gives `table ms / now ms`; the median over the references (robust to one odd block) is the time-base
factor, and every new row's p50 and p90 are multiplied by it. The factor, the references and their ratios are stored
with the rows (batches timed minutes apart on one busy machine have needed factors from 0.67 to 0.97). A factor far from
1 is logged: a deep slow phase now, or a table built on another machine — then the factor maps the average speed only,
and the new rows keep this machine's relative block costs.

Cache: the rows go to `<table>.extra.csv` + `<table>.extra.meta.json` next to the table, in the LUT format itself (so
`load_lut` validates them), tied to the table by the SHA-256 of its CSV and meta: a re-profiled table invalidates them.
Writes are atomic and merge with what another process may have added meanwhile. The table file itself is never
modified.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.digest import file_sha256
from hwnas.errors import HwnasError
from hwnas.latency.harness import Protocol, Timer, TimingStats, run_protocol
from hwnas.latency.lut import LatencyTable, load_lut, meta_path, save_lut
from hwnas.latency.profiles import DeviceProfile, profile_from_dict, profile_timer
from hwnas.space import GRAPH_REVISION, BlockSpec

__all__ = [
    "MeasuredRows",
    "extra_rows_path",
    "table_profile",
    "reference_keys",
    "measure_extra_rows",
    "load_extra_rows",
    "add_extra_rows",
    "with_extra_rows",
    "N_REFERENCES",
]

log = logging.getLogger(__name__)

N_REFERENCES = 8  # references per batch: enough for a stable median, few enough not to double the timing work
FACTOR_WARN = (0.67, 1.5)  # outside this range the table was most likely built on another machine


@dataclass(frozen=True, slots=True)
class MeasuredRows:
    """One batch of rows timed now: `rows` on the table's time base (the raw timings × `factor`), and the evidence:
    per reference its key, table p50 and p50 now."""

    rows: Mapping[str, TimingStats]
    factor: float
    references: tuple[tuple[str, float, float], ...]
    seconds: float

    def to_meta(self) -> dict[str, Any]:
        ratios = [table_ms / now_ms for _, table_ms, now_ms in self.references]
        return {
            "rows": sorted(self.rows),
            "time_base_factor": round(self.factor, 6),
            "references": [{"key": k, "table_ms": round(t, 6), "now_ms": round(n, 6)} for k, t, n in self.references],
            "ratio_min": round(min(ratios), 6),
            "ratio_max": round(max(ratios), 6),
            "seconds": round(self.seconds, 2),
            "date": _now(),
        }


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def extra_rows_path(lut_path: str | Path) -> Path:
    """`<dir>/<stem>.extra.csv` for the table `<dir>/<stem>.csv`."""
    path = Path(lut_path)
    stem = path.name[: -len(".csv")] if path.name.endswith(".csv") else path.name
    return path.with_name(f"{stem}.extra.csv")


def table_profile(table: LatencyTable) -> DeviceProfile:
    """The device profile a table was measured with (from its metadata), refused when it cannot be timed here."""
    profile = profile_from_dict(table.meta.get("profile"), where=f"LUT {table.source} metadata")
    if profile.remote:
        raise HwnasError(
            f"LUT {table.source} was measured on the remote device {profile.name}, so its missing rows "
            f"cannot be timed here; bundle the scaled space's blocks with 'hwnas bundle --device "
            f"{profile.name}', time them on the device and import them, or use --strategy evolution"
        )
    return profile


def reference_keys(table: LatencyTable, *, near: Iterable[str] = (), n: int = N_REFERENCES) -> tuple[str, ...]:
    """Up to `n` rows of the table to re-time as references, spread evenly over their latency range (deterministic).

    Preferably from `near` (e.g. the blocks of the arch being scaled: the same ops as the new rows, on the same
    machine paths); the rest of the table fills up when `near` has fewer than `n` rows.
    """
    pool = [k for k in dict.fromkeys(near) if k in table]
    if len(pool) < n:
        others = sorted((k for k in table.rows if k not in set(pool)), key=lambda k: (table.rows[k].p50_ms, k))
        picks = np.linspace(0, len(others) - 1, min(n - len(pool), len(others))) if others else np.empty(0)
        pool += [others[i] for i in sorted({int(round(i)) for i in picks})]
    pool.sort(key=lambda k: (table.rows[k].p50_ms, k))
    idx = sorted({int(round(i)) for i in np.linspace(0, len(pool) - 1, min(n, len(pool)))}) if pool else []
    return tuple(pool[i] for i in idx)


def _load(runner: Any, specs: Mapping[str, BlockSpec], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Each block exported and loaded like `hwnas profile` loads it (ONNX bytes for ONNX runners, modules otherwise)."""
    from hwnas.blocks import build_block
    from hwnas.latency.runtime import block_onnx_bytes

    if hasattr(runner, "load_onnx"):
        return {key: runner.load_onnx(block_onnx_bytes(spec, shapes[key]), shapes[key]) for key, spec in specs.items()}
    models = {key: (build_block(spec), shapes[key]) for key, spec in specs.items()}
    if hasattr(runner, "prepare"):  # runners that lower slowly: in worker processes, stopped before timing
        try:
            runner.prepare(list(models.values()))
        finally:
            runner.close()
    return {key: runner.load(model, shape) for key, (model, shape) in models.items()}


def measure_extra_rows(
    table: LatencyTable,
    specs: Sequence[BlockSpec],
    *,
    near: Iterable[str] = (),
    runner: Any | None = None,
    timer: Timer | None = None,
    rng: random.Random | None = None,
    progress: bool = False,
) -> MeasuredRows:
    """Time the blocks `specs` (those not yet in `table`) with the table's profile and protocol, interleaved with
    `reference_keys(table, near=near)`, and return them on the table's time base. `runner` defaults to the profile's
    (`hwnas.latency.runtime.make_runner`); int8 profiles need one built with a quantizer."""
    from hwnas.latency.runtime import make_runner

    started = time.monotonic()
    profile = table_profile(table)
    new = {spec.key: spec for spec in specs if spec.key not in table}
    if not new:
        return MeasuredRows({}, 1.0, (), 0.0)
    refs = reference_keys(table, near=near)
    if not refs:
        raise HwnasError(f"LUT {table.source} has no rows to use as references; rebuild it with 'hwnas profile'")
    items = {**new, **{f"ref:{k}": BlockSpec.parse_key(k) for k in refs}}
    shapes = {key: (profile.batch, spec.in_ch, spec.in_hw, spec.in_hw) for key, spec in items.items()}
    runner = runner if runner is not None else make_runner(profile)
    log.info("timing %d new rows with %d reference rows of %s on %s", len(new), len(refs), table.source, profile.name)
    loaded = _load(runner, items, shapes)
    try:
        stats = run_protocol(
            {key: ld.run for key, ld in loaded.items()},
            Protocol.from_profile(profile),
            rng=rng or random.Random(0),
            timer=timer or profile_timer(profile),
            progress=progress,
            desc=f"time {len(new)} new rows on {profile.name}",
        )
    finally:
        for ld in loaded.values():
            ld.release()
    references = tuple((k, table.rows[k].p50_ms, stats[f"ref:{k}"].p50_ms) for k in refs)
    factor = float(np.median([t / now for _, t, now in references]))
    if not FACTOR_WARN[0] <= factor <= FACTOR_WARN[1]:
        log.warning(
            "the reference rows of %s run x%.2f their table latency now (a slow phase of this machine, or a "
            "table built on another one): the new rows are rescaled by %.3f",
            table.source,
            1 / factor,
            factor,
        )
    rows = {
        key: TimingStats(stats[key].p50_ms * factor, stats[key].p90_ms * factor, stats[key].cv, stats[key].n)
        for key in new
    }
    return MeasuredRows(rows, factor, references, time.monotonic() - started)


def _extends(lut_path: Path) -> dict[str, str]:
    return {"lut": lut_path.name, "sha256": file_sha256(lut_path), "meta_sha256": file_sha256(meta_path(lut_path))}


def _empty(table: LatencyTable, lut_path: Path) -> LatencyTable:
    from hwnas.machine import machine_info

    info = machine_info()
    space = {**table.meta.get("space", {}), "block_graph_revision": GRAPH_REVISION}
    meta = {
        "device": table.device,
        "space": space,
        "profile": table.meta.get("profile"),
        "resolutions": [],
        "extends": _extends(lut_path),
        "versions": info["versions"],
        "cpu": info["cpu"],
        "cpu_signature": info["cpu_signature"],
        "calibration": None,
        "batches": [],
    }
    return LatencyTable({}, meta, source=str(extra_rows_path(lut_path)))


def load_extra_rows(table: LatencyTable, lut_path: str | Path) -> LatencyTable:
    """The cached extra rows of the table at `lut_path` (an empty table when there are none yet, or when the cache was
    made for another version of the table: then it is ignored, with a warning, and replaced on the next write)."""
    lut_path = Path(lut_path)
    path = extra_rows_path(lut_path)
    if not path.is_file():
        return _empty(table, lut_path)
    try:
        extra = load_lut(path)
    except HwnasError as exc:
        log.warning("ignoring the cached rows %s (%s); they will be measured again", path, exc)
        return _empty(table, lut_path)
    if (
        extra.meta.get("extends") != _extends(lut_path)
        or extra.space_hash != table.space_hash
        or extra.device != table.device
    ):
        log.warning(
            "ignoring the cached rows %s: they were measured for another version of %s; they will be measured again",
            path,
            lut_path.name,
        )
        return _empty(table, lut_path)
    return extra


def add_extra_rows(table: LatencyTable, lut_path: str | Path, measured: MeasuredRows) -> LatencyTable:
    """Merge a measured batch into the cache next to the table (re-read first: another process may have added rows)
    and write it atomically; returns the cache as written."""
    lut_path = Path(lut_path)
    current = load_extra_rows(table, lut_path)
    if not measured.rows:
        return current
    batches = [*current.meta.get("batches", []), measured.to_meta()]
    merged = LatencyTable(
        {**current.rows, **measured.rows}, {**current.meta, "batches": batches, "date": _now()}, source=current.source
    )
    save_lut(merged, extra_rows_path(lut_path))
    log.info("cached %d measured rows in %s (%d in all)", len(measured.rows), current.source, len(merged))
    return merged


def with_extra_rows(table: LatencyTable, extra: LatencyTable | Mapping[str, TimingStats]) -> LatencyTable:
    """The table with `extra`'s rows added (the table's own rows win; its metadata and calibration are kept)."""
    rows = extra.rows if isinstance(extra, LatencyTable) else extra
    return LatencyTable({**rows, **table.rows}, table.meta, source=table.source)
