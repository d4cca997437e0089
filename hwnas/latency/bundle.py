"""On-device measurement: `hwnas bundle` writes models + a manifest + `measure_bundle.py` + `protocol.py` +
`machine.py` (names the device's CPU);
`hwnas profile --import` turns the device's results into a LUT and, with held-out subnets, a fidelity report.

Why a bundle: the device that matters (a phone, a board) usually cannot run hwnas or torch, but it can run onnxruntime.
The bundle carries exactly the models a table needs (exported here by the same exporter that times blocks locally) and
the timing protocol itself: `hwnas.latency.protocol`, copied byte for byte, with the profile's protocol settings in
the manifest, so the device times with the code `hwnas profile` runs. The device scripts ship inside the package
(`hwnas/latency/device/`), so an installed wheel bundles as well as a source checkout.

Two kinds of bundle:
- blocks (default): every distinct block + the calibration subnets, timed in the same interleaved passes; the import
  is a table exactly like one `hwnas profile` builds.
- whole subnets (`--whole-subnets N`): N whole subnets only, for targets that cannot time single blocks; the import
  needs `--from-table REF` and fits a few-shot table from REF's rows and the N timings (`hwnas.latency.fewshot`).
Either may carry `--validate V` held-out subnets (drawn as `hwnas latency validate` draws them, never among the
calibration or whole subnets) and drift references (a spread of the whole subnets, re-timed in every validation chunk),
timed after the table's passes with the whole-model protocol, so the import reports the table's fidelity on the
device itself and stores it in the table's metadata.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hwnas.latency.protocol as protocol_module
import hwnas.machine as machine_module
from hwnas.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from hwnas.errors import HwnasError
from hwnas.latency.bundle_results import HELDOUT_PREFIX, REFERENCE_PREFIX, read_results
from hwnas.latency.calibrate import calibration_archs
from hwnas.latency.fewshot import MIN_SUBNETS
from hwnas.latency.fidelity import FidelityReport, fidelity_report
from hwnas.latency.harness import Protocol
from hwnas.latency.lut import LatencyTable, graph_revision, load_lut, lut_path, save_lut, space_meta
from hwnas.latency.profiler import SUBNET_PREFIX, calibrate_table, table_meta
from hwnas.latency.profiles import DeviceProfile, profile_from_dict
from hwnas.latency.validate import heldout_archs
from hwnas.space import Arch, BlockSpec, SpaceSpec, distinct_blocks

__all__ = [
    "BundlePlan",
    "Imported",
    "plan_bundle",
    "write_bundle",
    "bundle_manifest",
    "write_bundle_readme",
    "import_results",
    "measure_script_path",
    "device_script_path",
    "protocol_settings",
    "copy_device_files",
    "SCRIPT",
    "PROTOCOL_FILE",
    "N_REFERENCES",
    "VALIDATE_CHUNK",
]

log = logging.getLogger(__name__)
BUNDLE_SCHEMA = 2
SCRIPT = "measure_bundle.py"
PROTOCOL_FILE = "protocol.py"
MACHINE_FILE = "machine.py"
N_REFERENCES = 6  # drift references per validation chunk, as `hwnas latency validate` times them
VALIDATE_CHUNK = 40  # held-out subnets loaded at once on the device (bounded memory), as validate does here


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
    """Copy the device `scripts`, the timing protocol (`hwnas.latency.protocol`) and the machine record
    (`hwnas.machine`, which names the device's CPU) into a bundle, byte for byte."""
    files = {name: device_script_path(name) for name in scripts}
    files[PROTOCOL_FILE] = Path(str(protocol_module.__file__))
    files[MACHINE_FILE] = Path(str(machine_module.__file__))
    for name, path in files.items():
        atomic_write_bytes(out_dir / name, path.read_bytes())


@dataclass(frozen=True, slots=True)
class BundlePlan:
    """What a bundle holds: its mode, blocks, whole subnets (calibration, or the few-shot training subnets), held-out
    subnets and drift references (a spread of the whole subnets)."""

    mode: str  # "blocks" | "whole-subnets"
    resolutions: tuple[int, ...]
    blocks: dict[str, BlockSpec]
    subnets: tuple[Arch, ...]
    heldout: tuple[Arch, ...]
    references: tuple[Arch, ...]
    validate_seed: int

    def jobs(self, space: SpaceSpec, batch: int) -> list[tuple[str, BlockSpec | Arch, tuple[int, ...]]]:
        """(key, block or arch, input shape) of every model file; references reuse their subnet's file."""
        jobs: list[tuple[str, BlockSpec | Arch, tuple[int, ...]]] = [
            (key, s, (batch, s.in_ch, s.in_hw, s.in_hw)) for key, s in self.blocks.items()
        ]
        in_ch = space.in_channels
        jobs += [(SUBNET_PREFIX + str(a), a, (batch, in_ch, a.resolution, a.resolution)) for a in self.subnets]
        jobs += [(HELDOUT_PREFIX + str(a), a, (batch, in_ch, a.resolution, a.resolution)) for a in self.heldout]
        return jobs


def _spread(archs: Sequence[Arch], n: int) -> tuple[Arch, ...]:
    """Up to `n` of the whole subnets as drift references, round-robin over resolutions, each resolution's in the order
    `calibration_archs` drew them (smallest, largest, then random): a spread over sizes, fixed before the device has
    timed anything (validate spreads its references over measured latency; nothing is measured yet here)."""
    groups: dict[int, list[Arch]] = {}
    for arch in archs:
        groups.setdefault(arch.resolution, []).append(arch)
    picks: list[Arch] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        picks += [g[i] for g in groups.values() if i < len(g)]
    return tuple(picks[: max(0, n)])


def plan_bundle(
    space: SpaceSpec,
    profile: DeviceProfile,
    *,
    resolutions: Sequence[int] | None = None,
    calib_subnets: int | None = None,
    validate: int = 0,
    validate_seed: int = 1,
    whole_subnets: int | None = None,
) -> BundlePlan:
    """Decide a bundle's models (see the module docstring); user mistakes are one-line errors."""
    resolutions = tuple(resolutions or space.resolutions)
    if validate < 0:
        raise HwnasError(f"--validate must be >= 0, got {validate}")
    if whole_subnets is not None:
        if calib_subnets is not None:
            raise HwnasError(
                "--calib-subnets does not apply with --whole-subnets: the whole subnets are the calibration"
            )
        if whole_subnets < MIN_SUBNETS:
            raise HwnasError(
                f"--whole-subnets must be >= {MIN_SUBNETS} (a few-shot fit needs them), got {whole_subnets}"
            )
        subnets = calibration_archs(space, whole_subnets, resolutions=resolutions)
        blocks: dict[str, BlockSpec] = {}
    else:
        k = profile.calib_subnets if calib_subnets is None else calib_subnets
        subnets = calibration_archs(space, k, resolutions=resolutions)
        blocks = {s.key: s for per in distinct_blocks(space, resolutions).values() for s in per}
    if validate and not subnets:
        raise HwnasError(
            "--validate needs calibration subnets (the drift references and FLOPs fit); set --calib-subnets"
        )
    heldout = heldout_archs(
        space, validate, resolutions=resolutions, exclude={str(a) for a in subnets}, seed=validate_seed
    )
    overlap = {str(a) for a in heldout} & {str(a) for a in subnets}
    if overlap:  # heldout_archs excludes them; a held-out subnet that was fitted on would grade nothing
        raise HwnasError(
            f"held-out subnet {sorted(overlap)[0]} is also a calibration subnet; choose another --validate-seed"
        )
    return BundlePlan(
        mode="blocks" if whole_subnets is None else "whole-subnets",
        resolutions=resolutions,
        blocks=blocks,
        subnets=tuple(subnets),
        heldout=tuple(heldout),
        references=_spread(subnets, N_REFERENCES) if heldout else (),
        validate_seed=validate_seed,
    )


def bundle_manifest(
    space: SpaceSpec, profile: DeviceProfile, plan: BundlePlan, items: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """The manifest both bundle formats write: what the bundle is for, its protocol, its items and validation."""
    files = {item["key"]: item for item in items}
    refs = [
        {**files[SUBNET_PREFIX + str(a)], "key": REFERENCE_PREFIX + str(a), "kind": "reference"}
        for a in plan.references
    ]
    return {
        "schema": BUNDLE_SCHEMA,
        "kind": "hwnas-latency-bundle",
        "bundle_id": uuid.uuid4().hex,
        "mode": plan.mode,
        "device": profile.name,
        "space": space_meta(space),
        "resolutions": list(plan.resolutions),
        "profile": profile.to_dict(),
        "protocol": protocol_settings(profile),
        **extra,
        "validation": None
        if not plan.heldout
        else {
            "subnets": len(plan.heldout),
            "seed": plan.validate_seed,
            "chunk": VALIDATE_CHUNK,
            "passes": None,  # the whole-model protocol's default: 3 × the profile's rounds
            "references": [r["key"] for r in refs],
        },
        "items": items + refs,
    }


def write_bundle_readme(out_dir: Path, manifest: dict[str, Any], *, needs: str) -> None:
    plan = {"block": 0, "subnet": 0, "heldout": 0}
    for item in manifest["items"]:
        plan[item["kind"]] = plan.get(item["kind"], 0) + 1
    what = (
        f"{plan['block']} blocks + {plan['subnet']} calibration subnets"
        if manifest["mode"] == "blocks"
        else f"{plan['subnet']} whole subnets (no blocks: import with --from-table REF.csv)"
    )
    held = f" + {plan['heldout']} held-out subnets (fidelity report)" if plan["heldout"] else ""
    from_table = " --from-table REF.csv" if manifest["mode"] == "whole-subnets" else ""
    atomic_write_text(
        out_dir / "README.txt",
        f"hwnas latency bundle {manifest['bundle_id']}: {what}{held} of space {manifest['space']['name']} for device "
        f"profile {manifest['device']}.\n\nOn the device ({needs}):\n"
        f"    python3 {manifest['script']} . --out results.csv\n\n"
        f"Then copy results.csv and results.meta.json back and run:\n"
        f"    hwnas profile --import results.csv --device {manifest['device']}{from_table}\n",
    )


def write_bundle(
    space: SpaceSpec,
    profile: DeviceProfile,
    out_dir: Path,
    *,
    resolutions: Sequence[int] | None = None,
    calib_subnets: int | None = None,
    validate: int = 0,
    validate_seed: int = 1,
    whole_subnets: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Export the bundle's models (`plan_bundle`) to `out_dir` and return the manifest; `cache_dir`: lowered programs
    of an ExecuTorch bundle (`hwnas.latency.pte_cache`; an error for other runtimes, which export in seconds)."""
    plan = plan_bundle(
        space,
        profile,
        resolutions=resolutions,
        calib_subnets=calib_subnets,
        validate=validate,
        validate_seed=validate_seed,
        whole_subnets=whole_subnets,
    )
    if profile.runtime == "executorch":  # .pte programs + measure_bundle_pte.py (hwnas.latency.bundle_pte)
        from hwnas.latency.bundle_pte import write_pte_bundle

        return write_pte_bundle(space, profile, out_dir, plan=plan, cache_dir=cache_dir, progress=progress)
    if cache_dir is not None:
        raise HwnasError(
            f"a cache of lowered programs is for executorch profiles; {profile.name} uses {profile.runtime}"
        )
    from tqdm import tqdm

    from hwnas.latency.runtime import export_many

    items = []
    jobs = plan.jobs(space, profile.batch)
    exported = export_many([(space, obj, shape) for _, obj, shape in jobs], workers=2)  # in 2 processes when many
    for n, ((key, obj, shape), data) in enumerate(
        tqdm(zip(jobs, exported), total=len(jobs), desc="bundle", unit="model", disable=not progress, leave=False)
    ):
        kind = key.split(":", 1)[0] if isinstance(obj, Arch) else "block"
        rel = f"{kind}s/{n:04d}.onnx"
        atomic_write_bytes(out_dir / rel, data)
        items.append({"key": key, "kind": kind, "file": rel, "input_shape": list(shape)})
    manifest = bundle_manifest(space, profile, plan, items, format="onnx", script=SCRIPT)
    copy_device_files(out_dir, [SCRIPT])
    atomic_write_json(out_dir / "manifest.json", manifest)
    write_bundle_readme(out_dir, manifest, needs="python3 with numpy and onnxruntime")
    return manifest


@dataclass(frozen=True, slots=True)
class Imported:
    """An imported table, where it was written, and the device's fidelity report (None without held-out subnets)."""

    table: LatencyTable
    path: Path
    fidelity: FidelityReport | None


def _reference_table(path: Path, graph: int) -> tuple[LatencyTable, str]:
    from hwnas.digest import file_sha256

    reference = load_lut(path)
    if graph_revision(reference.meta) != graph:
        raise HwnasError(
            f"reference LUT {path} timed block graphs of revision {graph_revision(reference.meta)}, the bundle's "
            f"models are revision {graph}; rebuild it with '{reference.fix_hint()}'"
        )
    return reference, file_sha256(path)


def import_results(
    csv_path: Path,
    *,
    device: str,
    out_dir: Path,
    from_table: Path | None = None,
) -> Imported:
    """Turn a bundle's results.csv (+ results.meta.json beside it) into `<out_dir>/<device>/<space>.csv`.

    A block bundle's rows become the table (calibrated on its calibration subnets); a whole-subnet bundle needs
    `from_table` (REF) and becomes a few-shot table. With held-out subnets in the results, the fidelity report of the
    new table against them is stored in its metadata ("device_fidelity") and returned. Every check runs before anything
    is written."""
    results = read_results(csv_path)
    if results.mode == "whole-subnets" and from_table is None:
        raise HwnasError(
            f"{csv_path} holds whole subnets only (a --whole-subnets bundle): import it with --from-table REF.csv, "
            "a table of the same space on another device"
        )
    if results.mode == "blocks" and from_table is not None:
        raise HwnasError(
            f"{csv_path} is a block bundle's results: they make a full table, --from-table applies only to "
            "--whole-subnets bundles; drop --from-table"
        )
    meta = results.meta
    space = results.space
    profile = profile_from_dict({**meta["profile"], "name": device}, where=f"results {csv_path}")
    base = table_meta(space, profile, results.resolutions, imported_from=str(csv_path), bundle_id=results.bundle_id)
    machine = meta.get("machine") or {}
    base.update(
        machine=machine,
        versions=machine.get("versions"),
        cpu=machine.get("cpu") or machine.get("machine"),  # results of older scripts name the architecture only
        cpu_signature=machine.get("cpu_signature"),  # the device's, never this machine's
        date=meta.get("date"),
    )
    out_path = lut_path(out_dir, device, space)
    if from_table is not None:
        from hwnas.latency.fewshot import fewshot_table

        reference, digest = _reference_table(Path(from_table), results.graph_revision)
        table = fewshot_table(
            reference,
            space,
            results.subnet_timings(),
            resolutions=results.resolutions,
            meta=base,
            source=str(out_path),
            reference_digest=digest,
        )
    else:
        table = calibrate_table(
            LatencyTable(results.blocks, base, source=str(out_path)), space, results.subnet_timings()
        )
    report = None
    if results.heldout:
        archs = sorted(results.heldout, key=lambda a: results.chunk_of[a])
        report = fidelity_report(table, archs, results.measured(), results.references())
        table = table.with_meta(
            device_fidelity={
                "source": "device",
                "bundle_id": results.bundle_id,
                "results": str(csv_path),
                "date": meta.get("date"),
                "machine": machine,
                "validate_seed": (meta.get("validation") or {}).get("seed"),
                "report": report.to_meta(),
            }
        )
    save_lut(table, out_path)
    return Imported(table, out_path, report)
