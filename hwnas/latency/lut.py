"""Latency lookup tables: one CSV row per block signature (`BlockSpec.key`) plus a `.meta.json` header.

`latency_tables/<device>/<space>.csv` has columns key, ms_p50, ms_p90, cv, n — readable and diffable. Its sibling
`<space>.meta.json` says what the numbers mean: schema version, space name + hash, device profile, software versions,
CPU model, date and the calibration that turns a sum of rows into a whole-model prediction. Loading checks all of it: a
table for another space, a truncated file, NaN or negative latencies are one-line `HwnasError`s, and a missing key never
silently counts as 0.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_path, atomic_write_json
from hwnas.errors import HwnasError
from hwnas.latency.harness import TimingStats
from hwnas.space import GRAPH_REVISION, BlockSpec, SpaceSpec, get_space, space_hash, with_io

__all__ = ["LatencyTable", "load_lut", "save_lut", "lut_key", "meta_path", "lut_path", "SCHEMA", "COLUMNS"]

log = logging.getLogger(__name__)

SCHEMA = 1
COLUMNS = ("key", "ms_p50", "ms_p90", "cv", "n")


def lut_key(spec: BlockSpec) -> str:
    """The one place a LUT key is made: input shape + canonical block string."""
    return spec.key


def lut_path(out_dir: str | Path, device: str, space: SpaceSpec) -> Path:
    """`<out_dir>/<device>/<space>.csv` (`<space>-w<width>.csv` for width multipliers other than 1)."""
    stem = space.name if space.width == 1.0 else f"{space.name}-w{space.width:g}"
    return Path(out_dir) / device / f"{stem}.csv"


def meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(
        path.name[: -len(".csv")] + ".meta.json" if path.name.endswith(".csv") else path.name + ".meta.json"
    )


class LatencyTable:
    """Measured block latencies of one space on one device, with the metadata that makes them trustworthy."""

    def __init__(self, rows: Mapping[str, TimingStats], meta: Mapping[str, Any], *, source: str = "<memory>") -> None:
        self.rows: dict[str, TimingStats] = dict(rows)
        self.meta: dict[str, Any] = dict(meta)
        self.source = source

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    @property
    def device(self) -> str:
        return str(self.meta.get("device", "?"))

    @property
    def space_name(self) -> str:
        return str(self.meta.get("space", {}).get("name", "?"))

    @property
    def space_hash(self) -> str:
        return str(self.meta.get("space", {}).get("hash", "?"))

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(int(r) for r in self.meta.get("resolutions", ()))

    def fix_hint(self, resolution: int | None = None) -> str:
        res = f" --resolutions {resolution}" if resolution is not None else ""
        return f"run 'hwnas profile --device {self.device} --space {self.space_name}{res}' to build it"

    def ms(self, key: str) -> float:
        """p50 latency of one block; a missing key is an error naming the key and the command that adds it."""
        try:
            return self.rows[key].p50_ms
        except KeyError:
            res = key.split("x", 1)[0]
            hint = self.fix_hint(int(res) if res.isdigit() else None)
            raise HwnasError(
                f"LUT miss '{key}' in {self.source} (device {self.device}, space {self.space_name}); {hint}"
            ) from None

    def space(self) -> SpaceSpec:
        """The space this table was built for, rebuilt from its metadata and checked against the stored hash."""
        info = self.meta.get("space", {})
        try:
            space = with_io(
                get_space(info["name"], width=float(info.get("width", 1.0))),
                in_channels=int(info["in_channels"]),
                num_classes=int(info["num_classes"]),
            )
        except (KeyError, TypeError, ValueError):
            raise HwnasError(
                f"LUT {self.source}: metadata has no usable 'space' entry; rebuild with 'hwnas profile'"
            ) from None
        if space_hash(space) != self.space_hash:
            raise HwnasError(
                f"LUT {self.source} was built for a different version of space {space.name!r} "
                f"(hash {self.space_hash}, current {space_hash(space)}); {self.fix_hint()}"
            )
        return space

    def with_meta(self, **updates: Any) -> LatencyTable:
        return LatencyTable(self.rows, {**self.meta, **updates}, source=self.source)


def space_meta(space: SpaceSpec) -> dict[str, Any]:
    """The space a table or bundle is for, and which graphs its blocks export to (`GRAPH_REVISION`)."""
    return {
        "name": space.name,
        "hash": space_hash(space),
        "width": space.width,
        "in_channels": space.in_channels,
        "num_classes": space.num_classes,
        "block_graph_revision": GRAPH_REVISION,
    }


def save_lut(table: LatencyTable, path: str | Path) -> Path:
    """Write `<path>` (CSV) and its `.meta.json` atomically: readers see the old table or the new one, never half."""
    import pandas as pd

    path = Path(path)
    frame = pd.DataFrame(
        [(key, s.p50_ms, s.p90_ms, s.cv, s.n) for key, s in sorted(table.rows.items())], columns=list(COLUMNS)
    )
    meta = {"schema": SCHEMA, **table.meta, "rows": len(frame)}
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    atomic_write_json(meta_path(path), meta)
    return path


def _bad(path: Path, what: str, table_hint: str) -> HwnasError:
    return HwnasError(f"LUT {path}: {what}; {table_hint}")


def load_lut(path: str | Path, *, space: SpaceSpec | None = None) -> LatencyTable:
    """Read and validate a table; with `space`, also check that the table was built for exactly that space (hash)."""
    import pandas as pd

    path = Path(path)
    if path.name.endswith(".meta.json"):
        path = path.with_name(path.name[: -len(".meta.json")] + ".csv")
    rebuild = "rebuild it with 'hwnas profile --device <profile> --space <space>'"
    if not path.is_file():
        raise HwnasError(f"LUT not found: {path}; {rebuild} or pass an existing table with --lut")
    mpath = meta_path(path)
    try:
        meta = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise _bad(path, f"metadata {mpath.name} is missing", rebuild) from None
    except (OSError, ValueError):
        raise _bad(path, f"metadata {mpath.name} is unreadable or truncated JSON", rebuild) from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else None
        raise _bad(path, f"metadata schema {found!r} is not {SCHEMA}", rebuild)
    device = meta.get("device", "<profile>")
    sname = meta.get("space", {}).get("name", "<space>") if isinstance(meta.get("space"), dict) else "<space>"
    rebuild = f"rebuild it with 'hwnas profile --device {device} --space {sname}'"
    try:
        frame = pd.read_csv(path, dtype={"key": str})
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise _bad(path, f"unreadable CSV ({type(exc).__name__})", rebuild) from None
    if tuple(frame.columns) != COLUMNS:
        raise _bad(path, f"columns {list(frame.columns)} are not {list(COLUMNS)}", rebuild)
    if len(frame) != meta.get("rows"):
        raise _bad(
            path, f"has {len(frame)} rows but its metadata says {meta.get('rows')} (truncated or edited)", rebuild
        )
    if frame["key"].isna().any() or frame["key"].duplicated().any():
        raise _bad(path, "has empty or duplicate keys", rebuild)
    rows: dict[str, TimingStats] = {}
    for rec in frame.itertuples(index=False):
        values = (rec.ms_p50, rec.ms_p90, rec.cv, rec.n)
        try:
            p50, p90, cv, n = (float(v) for v in values)
        except (TypeError, ValueError):
            raise _bad(path, f"row {rec.key!r} has a non-numeric value", rebuild) from None
        if not all(math.isfinite(v) for v in (p50, p90, cv, n)):
            raise _bad(path, f"row {rec.key!r} has a NaN or infinite value", rebuild)
        if p50 <= 0 or p90 < 0 or cv < 0 or n < 1:
            raise _bad(path, f"row {rec.key!r} has a zero or negative value", rebuild)
        BlockSpec.parse_key(rec.key)  # a malformed key names itself
        rows[rec.key] = TimingStats(p50, p90, cv, int(n))
    table = LatencyTable(rows, meta, source=str(path))
    if space is not None and table.space_hash != space_hash(space):
        raise HwnasError(
            f"LUT {path} was built for space {table.space_name!r} (hash {table.space_hash}), not "
            f"{space.name!r} (hash {space_hash(space)}, {space.in_channels} input channels, "
            f"{space.num_classes} classes); build one with 'hwnas profile --device {device} --space {space.name}'"
        )
    _warn_if_other_cpu(table)
    _warn_if_other_graph(table)
    return table


def graph_revision(meta: dict) -> int:
    """The block-graph revision (`hwnas.space.GRAPH_REVISION`) a table's blocks were timed on; 1 before it was recorded."""
    return int((meta.get("space") or {}).get("block_graph_revision", 1))


def _warn_if_other_graph(table: LatencyTable) -> None:
    """A table timed on blocks that export to other operators predicts those graphs, not today's: say so."""
    timed = graph_revision(table.meta)
    if timed != GRAPH_REVISION:
        log.warning(
            "LUT %s timed block graphs of revision %d, this hwnas exports revision %d (other operators, same "
            "math): rebuild it with 'hwnas profile --device %s --space %s' for up-to-date latencies",
            table.source,
            timed,
            GRAPH_REVISION,
            table.device,
            table.space_name,
        )


def _warn_if_other_cpu(table: LatencyTable) -> None:
    """A table measured locally on another CPU model predicts that CPU, not this one: say so (once per load). Tables
    that carry a `cpu_signature` (family/model/instruction sets) are held to it too; older ones to the name only."""
    from hwnas.machine import other_cpu

    stored = table.meta.get("profile")
    profile: dict[str, Any] = stored if isinstance(stored, dict) else {}
    if profile.get("remote") or profile.get("provider", "cpu") != "cpu" or not table.meta.get("cpu"):
        return
    differs = other_cpu(table.meta.get("cpu"), table.meta.get("cpu_signature"))
    if differs:
        _, built_on, here = differs
        log.warning(
            "LUT %s was measured on %r, this machine is %r: its latencies describe that CPU; rebuild it here "
            "with 'hwnas profile --device %s --space %s' to predict this one",
            table.source,
            built_on,
            here,
            table.device,
            table.space_name,
        )


def rows_from_records(records: Iterable[tuple[str, float, float, float, int]]) -> dict[str, TimingStats]:
    return {key: TimingStats(float(p50), float(p90), float(cv), int(n)) for key, p50, p90, cv, n in records}
