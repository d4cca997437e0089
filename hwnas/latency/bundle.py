"""On-device measurement: `hwnas bundle` writes block ONNX files + a manifest + `measure_bundle.py` + `protocol.py`;
`hwnas profile --import` turns the device's results into a LUT.

Why a bundle: the device that matters (a phone, a board) usually cannot run hwnas or torch, but it can run onnxruntime.
The bundle carries exactly the blocks a LUT needs (exported here by the same exporter that times blocks locally) and the
calibration subnets, so the imported table gets the same calibration as a locally built one. It also carries the timing
protocol itself: `hwnas.latency.protocol`, copied byte for byte, with the profile's protocol settings in the manifest,
so the device times with the code `hwnas profile` runs. The device scripts ship inside the package
(`hwnas/latency/device/`), so an installed wheel bundles as well as a source checkout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hwnas.latency.protocol as protocol_module
from hwnas.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from hwnas.errors import HwnasError
from hwnas.latency.calibrate import calibration_archs
from hwnas.latency.harness import Protocol, TimingStats
from hwnas.latency.lut import COLUMNS, LatencyTable, graph_revision, lut_path, save_lut, space_meta
from hwnas.latency.profiler import SUBNET_PREFIX, calibrate_table
from hwnas.latency.profiles import DeviceProfile, profile_from_dict
from hwnas.space import Arch, BlockSpec, SpaceSpec, distinct_blocks, get_space, space_hash, with_io

__all__ = [
    "write_bundle",
    "import_results",
    "measure_script_path",
    "device_script_path",
    "protocol_settings",
    "copy_device_files",
    "SCRIPT",
    "PROTOCOL_FILE",
]

log = logging.getLogger(__name__)
BUNDLE_SCHEMA = 1
SCRIPT = "measure_bundle.py"
PROTOCOL_FILE = "protocol.py"


def device_script_path(name: str) -> Path:
    """A device script shipped with the package (`hwnas/latency/device/<name>`)."""
    path = Path(__file__).resolve().parent / "device" / name
    if not path.is_file():
        raise HwnasError(
            f"{path} is missing from this hwnas installation; reinstall hwnas (pip install --force-reinstall)"
        )
    return path


def measure_script_path() -> Path:
    return device_script_path(SCRIPT)


def protocol_settings(profile: DeviceProfile) -> dict[str, Any]:
    """The profile's protocol settings as the manifest carries them (the device script times with these)."""
    settings = Protocol.from_profile(profile).to_dict()
    del settings["checkpoint_s"]  # a resume interval of `hwnas profile`; the device script does not checkpoint
    return settings


def copy_device_files(out_dir: Path, scripts: Sequence[str]) -> None:
    """Copy the device `scripts` and the timing protocol (`hwnas.latency.protocol`, byte for byte) into a bundle."""
    files = {name: device_script_path(name) for name in scripts}
    files[PROTOCOL_FILE] = Path(str(protocol_module.__file__))
    for name, path in files.items():
        atomic_write_bytes(out_dir / name, path.read_bytes())


def write_bundle(
    space: SpaceSpec,
    profile: DeviceProfile,
    out_dir: Path,
    *,
    resolutions: Sequence[int] | None = None,
    calib_subnets: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Export every distinct block (+ calibration subnets) to `out_dir` and return the manifest."""
    if profile.runtime == "executorch":  # .pte programs + measure_bundle_pte.py (hwnas.latency.bundle_pte)
        from hwnas.latency.bundle_pte import write_pte_bundle

        return write_pte_bundle(
            space, profile, out_dir, resolutions=resolutions, calib_subnets=calib_subnets, progress=progress
        )
    from tqdm import tqdm

    from hwnas.blocks import build_model
    from hwnas.latency.runtime import block_onnx_bytes, onnx_bytes

    resolutions = tuple(resolutions or space.resolutions)
    specs = {s.key: s for res, per in distinct_blocks(space, resolutions).items() for s in per}
    k = profile.calib_subnets if calib_subnets is None else calib_subnets
    archs = calibration_archs(space, k, resolutions=resolutions)
    jobs: list[tuple[str, BlockSpec | Arch, tuple[int, ...]]] = [
        (key, s, (profile.batch, s.in_ch, s.in_hw, s.in_hw)) for key, s in specs.items()
    ]
    jobs += [(SUBNET_PREFIX + str(a), a, (profile.batch, space.in_channels, a.resolution, a.resolution)) for a in archs]
    items = []
    for n, (key, obj, shape) in enumerate(tqdm(jobs, desc="bundle", unit="model", disable=not progress, leave=False)):
        kind = "subnet" if isinstance(obj, Arch) else "block"
        data = onnx_bytes(build_model(space, obj), shape) if isinstance(obj, Arch) else block_onnx_bytes(obj, shape)
        rel = f"{kind}s/{n:04d}.onnx"
        atomic_write_bytes(out_dir / rel, data)
        items.append({"key": key, "kind": kind, "file": rel, "input_shape": list(shape)})
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "kind": "hwnas-latency-bundle",
        "format": "onnx",
        "device": profile.name,
        "space": space_meta(space),
        "resolutions": list(resolutions),
        "profile": profile.to_dict(),
        "protocol": protocol_settings(profile),
        "script": SCRIPT,
        "items": items,
    }
    copy_device_files(out_dir, [SCRIPT])
    atomic_write_json(out_dir / "manifest.json", manifest)
    atomic_write_text(
        out_dir / "README.txt",
        (
            f"hwnas latency bundle: {len(specs)} blocks + {len(archs)} calibration subnets of space {space.name} "
            f"for device profile {profile.name}.\n\nOn the device (python3 with numpy and onnxruntime):\n"
            f"    python3 {SCRIPT} . --out results.csv\n\nThen copy results.csv and results.meta.json back and run:\n"
            f"    hwnas profile --import results.csv --device {profile.name}\n"
        ),
    )
    return manifest


def _space_from_results(meta: dict[str, Any], csv_path: Path) -> SpaceSpec:
    info = meta.get("space", {})
    try:
        space = with_io(
            get_space(str(info["name"]), width=float(info.get("width", 1.0))),
            in_channels=int(info["in_channels"]),
            num_classes=int(info["num_classes"]),
        )
    except (KeyError, TypeError, ValueError):
        raise HwnasError(
            f"{csv_path}: results metadata names no space; re-run measure_bundle.py from the bundle"
        ) from None
    if space_hash(space) != info.get("hash"):
        raise HwnasError(
            f"{csv_path}: bundle was made for another version of space {space.name!r} "
            f"(hash {info.get('hash')}, current {space_hash(space)}); make a new bundle with 'hwnas bundle'"
        )
    return space


def import_results(csv_path: Path, *, device: str, out_dir: Path) -> tuple[LatencyTable, Path]:
    """Turn measure_bundle.py's results.csv (+ results.meta.json beside it) into `<out_dir>/<device>/<space>.csv`."""
    import pandas as pd

    from hwnas.latency.profiler import table_meta

    csv_path = Path(csv_path)
    meta_file = csv_path.with_name(
        csv_path.name[:-4] + ".meta.json" if csv_path.name.endswith(".csv") else csv_path.name + ".meta.json"
    )
    if not csv_path.is_file():
        raise HwnasError(f"results file {csv_path} not found; run measure_bundle.py on the device first")
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise HwnasError(f"{meta_file} not found; copy it back from the device together with {csv_path.name}") from None
    except (OSError, ValueError):
        raise HwnasError(f"{meta_file} is unreadable or truncated; re-run measure_bundle.py") from None
    if meta.get("kind") != "hwnas-bundle-results":
        raise HwnasError(f"{meta_file} was not written by measure_bundle.py; re-run it on the device")
    space = _space_from_results(meta, csv_path)
    try:
        frame = pd.read_csv(csv_path, dtype={"key": str})
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise HwnasError(f"{csv_path} is not a readable CSV; re-run measure_bundle.py") from None
    if tuple(frame.columns) != COLUMNS or frame[list(COLUMNS[1:])].isna().any().any():
        raise HwnasError(f"{csv_path}: expected columns {list(COLUMNS)} without empty values; re-run measure_bundle.py")
    resolutions = tuple(int(r) for r in meta["resolutions"])
    wanted = {s.key for per in distinct_blocks(space, resolutions).values() for s in per}
    rows: dict[str, TimingStats] = {}
    subnets: dict[Arch, tuple[float, float]] = {}
    for rec in frame.itertuples(index=False):
        stats = TimingStats(float(rec.ms_p50), float(rec.ms_p90), float(rec.cv), int(rec.n))
        if not stats.p50_ms > 0:
            raise HwnasError(f"{csv_path}: row {rec.key!r} has a non-positive latency; re-run measure_bundle.py")
        if rec.key.startswith(SUBNET_PREFIX):
            subnets[Arch.parse(rec.key[len(SUBNET_PREFIX) :])] = (stats.p50_ms, stats.cv)
        elif rec.key in wanted:
            rows[rec.key] = stats
        else:
            BlockSpec.parse_key(rec.key)
            raise HwnasError(f"{csv_path}: key {rec.key!r} is not a block of space {space.name}; wrong results file?")
    missing = sorted(wanted - set(rows))
    if missing:
        raise HwnasError(
            f"{csv_path}: {len(missing)} blocks missing, e.g. {missing[0]!r}; re-run measure_bundle.py "
            "on the whole bundle"
        )
    prof = {**meta["profile"], "name": device}
    profile = profile_from_dict(prof, where=f"results {meta_file}")
    base = table_meta(space, profile, resolutions, imported_from=str(csv_path))
    base["space"]["block_graph_revision"] = graph_revision(meta)  # what the bundle's files were, not today's
    base.update(
        machine=meta.get("machine"),
        versions=meta.get("machine", {}).get("versions"),
        cpu=meta.get("machine", {}).get("machine"),
        date=meta.get("date"),
    )
    out_path = lut_path(out_dir, device, space)
    table = calibrate_table(LatencyTable(rows, base, source=str(out_path)), space, subnets)
    save_lut(table, out_path)
    return table, out_path
