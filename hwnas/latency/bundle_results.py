"""What a device sends back from a bundle: results.csv + results.meta.json, read and checked before anything is written.

measure_bundle.py (and measure_bundle_pte.py) write one CSV row per timed item — LUT columns, keyed by block key,
`subnet:<arch>` (calibration subnets, or the whole subnets of a `--whole-subnets` bundle), `heldout:<arch>` (held-out
subnets of `--validate`) and `reference:<arch>@<chunk>` (drift references, re-timed in every validation chunk) — and a
meta file with the bundle's id, its items and roles, the protocol used, the device's machine record, the validation
chunks and split halves, and the SHA-256 of the CSV it wrote beside it. `read_results` refuses, in one line each:
results that are not that pair (edited, or the CSV of one run and the meta of another), a bundle of another space or
block-graph revision, missing or unknown rows, NaN, infinite or non-positive times, a held-out subnet that is also a
calibration subnet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.digest import file_sha256
from hwnas.errors import HwnasError
from hwnas.latency.drift import Reference
from hwnas.latency.fidelity import Measured
from hwnas.latency.harness import TimingStats
from hwnas.latency.lut import COLUMNS, graph_revision, meta_path
from hwnas.latency.profiler import SUBNET_PREFIX
from hwnas.space import (
    GRAPH_REVISION,
    Arch,
    BlockSpec,
    SpaceSpec,
    check_arch,
    distinct_blocks,
    get_space,
    space_hash,
    with_io,
)

__all__ = [
    "BundleResults",
    "read_results",
    "SUBNET_PREFIX",
    "HELDOUT_PREFIX",
    "REFERENCE_PREFIX",
    "MODES",
]

HELDOUT_PREFIX = "heldout:"
REFERENCE_PREFIX = "reference:"
MODES = ("blocks", "whole-subnets")
RERUN = "re-run the bundle's script on the device"


@dataclass(frozen=True, slots=True)
class BundleResults:
    """One device run of a bundle, checked: its block rows, its whole subnets (calibration, or the training subnets of a
    whole-subnet bundle), its held-out subnets with their validation chunks and split halves, and its references."""

    path: Path
    meta: dict[str, Any]
    space: SpaceSpec
    resolutions: tuple[int, ...]
    mode: str
    bundle_id: str
    blocks: dict[str, TimingStats]
    subnets: dict[Arch, TimingStats]
    heldout: dict[Arch, TimingStats]
    chunk_of: dict[Arch, int]
    reference_timings: tuple[dict[Arch, TimingStats], ...]
    halves: dict[Arch, tuple[float, float]]

    @property
    def graph_revision(self) -> int:
        return graph_revision(self.meta)

    def measured(self) -> Measured:
        """The held-out subnets as `hwnas.latency.fidelity.fidelity_report` takes them."""
        return Measured(dict(self.heldout), dict(self.chunk_of), self.reference_timings, dict(self.halves))

    def references(self) -> tuple[Reference, ...]:
        """The drift references, each with its latency in the table's passes (the time base of the table)."""
        timed = {a for chunk in self.reference_timings for a in chunk}
        return tuple(Reference(a, self.subnets[a].p50_ms) for a in sorted(timed, key=str))

    def subnet_timings(self) -> dict[Arch, tuple[float, float]]:
        """{arch: (p50 ms, cv)} of the whole subnets, as the calibration takes them."""
        return {a: (st.p50_ms, st.cv) for a, st in self.subnets.items()}


def _space(meta: Mapping[str, Any], where: Path) -> SpaceSpec:
    info = meta.get("space") or {}
    try:
        space = with_io(
            get_space(str(info["name"]), width=float(info.get("width", 1.0))),
            in_channels=int(info["in_channels"]),
            num_classes=int(info["num_classes"]),
        )
    except (KeyError, TypeError, ValueError, HwnasError):
        raise HwnasError(f"{where}: results metadata names no known space; {RERUN}") from None
    if space_hash(space) != info.get("hash"):
        raise HwnasError(
            f"{where}: the bundle was made for another version of space {space.name!r} (hash {info.get('hash')}, "
            f"current {space_hash(space)}); make a new bundle with 'hwnas bundle'"
        )
    revision = graph_revision(dict(meta))
    if revision != GRAPH_REVISION:
        raise HwnasError(
            f"{where}: the bundle's models are block graphs of revision {revision}, this hwnas exports revision "
            f"{GRAPH_REVISION}; make a new bundle with 'hwnas bundle'"
        )
    return space


def _read_meta(csv_path: Path) -> dict[str, Any]:
    meta_file = meta_path(csv_path)
    if not csv_path.is_file():
        raise HwnasError(f"results file {csv_path} not found; run the bundle's script on the device first")
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise HwnasError(f"{meta_file} not found; copy it back from the device together with {csv_path.name}") from None
    except (OSError, ValueError):
        raise HwnasError(f"{meta_file} is unreadable or truncated; {RERUN}") from None
    if not isinstance(meta, dict) or meta.get("kind") != "hwnas-bundle-results":
        raise HwnasError(f"{meta_file} was not written by a bundle's measure script; {RERUN}")
    bundle = meta.get("bundle")
    if not isinstance(bundle, dict) or not bundle.get("id") or not meta.get("results_sha256"):
        raise HwnasError(
            f"{meta_file} names no bundle id or results digest (an older measure_bundle.py); make a new bundle with "
            "'hwnas bundle' and time it"
        )
    if file_sha256(csv_path) != meta["results_sha256"]:
        raise HwnasError(
            f"{csv_path} is not the results file {meta_file.name} describes (bundle {bundle['id']}): it was edited or "
            "comes from another run or bundle; copy back the results.csv and results.meta.json of one run"
        )
    if bundle.get("mode") not in MODES:
        raise HwnasError(f"{meta_file}: unknown bundle mode {bundle.get('mode')!r}; {RERUN}")
    return meta


def _read_rows(csv_path: Path) -> dict[str, TimingStats]:
    import pandas as pd

    try:
        frame = pd.read_csv(csv_path, dtype={"key": str})
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise HwnasError(f"{csv_path} is not a readable CSV; {RERUN}") from None
    if tuple(frame.columns) != COLUMNS:
        raise HwnasError(f"{csv_path}: expected columns {list(COLUMNS)}; {RERUN}")
    if frame["key"].isna().any() or frame["key"].duplicated().any():
        raise HwnasError(f"{csv_path} has empty or duplicate keys; {RERUN}")
    rows: dict[str, TimingStats] = {}
    for rec in frame.itertuples(index=False):
        try:
            p50, p90, cv, n = (float(v) for v in (rec.ms_p50, rec.ms_p90, rec.cv, rec.n))
        except (TypeError, ValueError):
            raise HwnasError(f"{csv_path}: row {rec.key!r} has a non-numeric value; {RERUN}") from None
        if not all(math.isfinite(v) for v in (p50, p90, cv, n)):
            raise HwnasError(f"{csv_path}: row {rec.key!r} has a NaN or infinite value; {RERUN}")
        if p50 <= 0 or p90 <= 0 or cv < 0 or n < 1:
            raise HwnasError(f"{csv_path}: row {rec.key!r} has a zero or negative time or count; {RERUN}")
        rows[str(rec.key)] = TimingStats(p50, p90, cv, int(n))
    return rows


def _arch(space: SpaceSpec, text: str, where: Path, resolutions: tuple[int, ...]) -> Arch:
    arch = Arch.parse(text)
    check_arch(space, arch)
    if arch.resolution not in resolutions:
        raise HwnasError(f"{where}: subnet {text} is not at the bundle's resolutions {list(resolutions)}; {RERUN}")
    return arch


def read_results(csv_path: Path) -> BundleResults:
    """Read and check a device's results.csv (+ results.meta.json beside it); nothing is written."""
    csv_path = Path(csv_path)
    meta = _read_meta(csv_path)
    space = _space(meta, csv_path)
    resolutions = tuple(int(r) for r in meta["resolutions"])
    rows = _read_rows(csv_path)
    items = [(str(i["key"]), str(i["kind"])) for i in meta.get("items", [])]
    validation = meta.get("validation") or {}
    chunks = int(validation.get("chunks", 0))
    expected = {key for key, kind in items if kind != "reference"}
    expected |= {f"{key}@{c}" for key, kind in items if kind == "reference" for c in range(chunks)}
    missing = sorted(expected - set(rows))
    if missing:
        raise HwnasError(
            f"{csv_path}: {len(missing)} rows of bundle {meta['bundle']['id']} are missing, e.g. {missing[0]!r}; "
            f"{RERUN} on the whole bundle"
        )
    unknown = sorted(set(rows) - expected)
    if unknown:
        raise HwnasError(f"{csv_path}: row {unknown[0]!r} is not an item of bundle {meta['bundle']['id']}; {RERUN}")
    blocks: dict[str, TimingStats] = {}
    subnets: dict[Arch, TimingStats] = {}
    heldout: dict[Arch, TimingStats] = {}
    for key, kind in items:
        if kind == "block":
            BlockSpec.parse_key(key)
            blocks[key] = rows[key]
        elif kind == "subnet":
            subnets[_arch(space, key.removeprefix(SUBNET_PREFIX), csv_path, resolutions)] = rows[key]
        elif kind == "heldout":
            heldout[_arch(space, key.removeprefix(HELDOUT_PREFIX), csv_path, resolutions)] = rows[key]
        elif kind != "reference":
            raise HwnasError(f"{csv_path}: item {key!r} has unknown kind {kind!r}; {RERUN}")
    both = sorted(str(a) for a in set(heldout) & set(subnets))
    if both:
        raise HwnasError(f"{csv_path}: held-out subnet {both[0]} is also a calibration subnet; make a new bundle")
    refs = [Arch.parse(key.removeprefix(REFERENCE_PREFIX)) for key, kind in items if kind == "reference"]
    if any(a not in subnets for a in refs):
        raise HwnasError(f"{csv_path}: a drift reference is not one of the bundle's whole subnets; {RERUN}")
    placed = validation.get("chunk_of") or {}
    unplaced = sorted(str(a) for a in heldout if HELDOUT_PREFIX + str(a) not in placed)
    if unplaced:
        raise HwnasError(f"{csv_path}: held-out subnet {unplaced[0]} has no validation chunk in the metadata; {RERUN}")
    chunk_of = {a: int(placed[HELDOUT_PREFIX + str(a)]) for a in heldout}
    halves = {
        a: (float(h[0]), float(h[1]))
        for a in heldout
        if (h := (validation.get("halves_ms") or {}).get(HELDOUT_PREFIX + str(a))) is not None
    }
    ref_timings = tuple({a: rows[f"{REFERENCE_PREFIX}{a}@{c}"] for a in refs} for c in range(chunks))
    if any(c not in range(chunks) for c in chunk_of.values()):
        raise HwnasError(f"{csv_path}: a held-out subnet names a validation chunk that was not timed; {RERUN}")
    mode = str(meta["bundle"]["mode"])
    if mode == "blocks":
        wanted = {s.key for per in distinct_blocks(space, resolutions).values() for s in per}
        absent = sorted(wanted - set(blocks))
        if absent:
            raise HwnasError(
                f"{csv_path}: {len(absent)} blocks missing, e.g. {absent[0]!r}; a partial bundle never becomes a "
                "table: bundle the whole space and time it"
            )
        stray = sorted(set(blocks) - wanted)
        if stray:
            raise HwnasError(f"{csv_path}: key {stray[0]!r} is not a block of space {space.name}; wrong results file?")
    return BundleResults(
        path=csv_path,
        meta=meta,
        space=space,
        resolutions=resolutions,
        mode=mode,
        bundle_id=str(meta["bundle"]["id"]),
        blocks=blocks,
        subnets=subnets,
        heldout=heldout,
        chunk_of=chunk_of,
        reference_timings=ref_timings,
        halves=halves,
    )
