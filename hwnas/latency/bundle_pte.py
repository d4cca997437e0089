"""The ExecuTorch variant of `hwnas bundle`: block `.pte` programs + manifest + `measure_bundle_pte.py` (with
`measure_bundle.py` and `protocol.py`, which it runs).

Same layout and manifest as the ONNX bundle (`hwnas.latency.bundle`), so `hwnas profile --import results.csv` reads the
results unchanged; only the model files (XNNPACK-delegated `.pte`, lowered by the same `pte_bytes` that times blocks
locally) and the measuring script differ. The script needs the ExecuTorch runtime only — the `executorch` wheel on an
ARM Linux board, or its `executor_runner` on Android (the manifest lists each file's input shape for that).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from hwnas.errors import HwnasError
from hwnas.latency.bundle import SCRIPT, copy_device_files, device_script_path, protocol_settings
from hwnas.latency.calibrate import calibration_archs
from hwnas.latency.lut import space_meta
from hwnas.latency.profiler import SUBNET_PREFIX
from hwnas.latency.profiles import DeviceProfile
from hwnas.space import Arch, BlockSpec, SpaceSpec, distinct_blocks

__all__ = ["write_pte_bundle", "pte_script_path", "PTE_SCRIPT"]

log = logging.getLogger(__name__)
BUNDLE_SCHEMA = 1
PTE_SCRIPT = "measure_bundle_pte.py"


def pte_script_path() -> Path:
    return device_script_path(PTE_SCRIPT)


def write_pte_bundle(
    space: SpaceSpec,
    profile: DeviceProfile,
    out_dir: Path,
    *,
    resolutions: Sequence[int] | None = None,
    calib_subnets: int | None = None,
    keys: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Lower every distinct block (+ calibration subnets) to `.pte` in `out_dir` and return the manifest.

    `keys` restricts the bundle to these block keys (a partial bundle, e.g. to check a device quickly; its results
    cannot be imported as a full table). `cache_dir` reuses programs lowered for local timing (see ExecuTorchRunner).
    """
    from tqdm import tqdm

    from hwnas.blocks import build_block, build_model
    from hwnas.latency.executorch_runner import cached_pte_bytes, executorch_version, require_executorch

    require_executorch(f"an ExecuTorch bundle for {profile.name}")
    if profile.runtime != "executorch":
        raise HwnasError(
            f"profile {profile.name} uses runtime {profile.runtime}; a .pte bundle needs runtime executorch"
        )
    resolutions = tuple(resolutions or space.resolutions)
    specs = {s.key: s for res, per in distinct_blocks(space, resolutions).items() for s in per}
    if keys is not None:
        unknown = [k for k in keys if k not in specs]
        if unknown:
            raise HwnasError(
                f"block {unknown[0]!r} is not in space {space.name} at {list(resolutions)}; "
                "list blocks with 'hwnas space show'"
            )
        specs = {k: specs[k] for k in keys}
    k = profile.calib_subnets if calib_subnets is None else calib_subnets
    archs = calibration_archs(space, k, resolutions=resolutions)
    jobs: list[tuple[str, BlockSpec | Arch, tuple[int, ...]]] = [
        (key, s, (profile.batch, s.in_ch, s.in_hw, s.in_hw)) for key, s in specs.items()
    ]
    jobs += [(SUBNET_PREFIX + str(a), a, (profile.batch, space.in_channels, a.resolution, a.resolution)) for a in archs]
    items = []
    for n, (key, obj, shape) in enumerate(
        tqdm(jobs, desc="bundle .pte", unit="model", disable=not progress, leave=False)
    ):
        kind = "subnet" if isinstance(obj, Arch) else "block"
        model = build_model(space, obj) if isinstance(obj, Arch) else build_block(obj)
        rel = f"{kind}s/{n:04d}.pte"
        atomic_write_bytes(out_dir / rel, cached_pte_bytes(model, shape, cache_dir=cache_dir))
        items.append({"key": key, "kind": kind, "file": rel, "input_shape": list(shape)})
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "kind": "hwnas-latency-bundle",
        "format": "pte",
        "device": profile.name,
        "space": space_meta(space),
        "resolutions": list(resolutions),
        "profile": profile.to_dict(),
        "protocol": protocol_settings(profile),
        "executorch": executorch_version(),
        "delegate": "XnnpackPartitioner",
        "script": PTE_SCRIPT,
        "complete": keys is None,
        "items": items,
    }
    copy_device_files(out_dir, [PTE_SCRIPT, SCRIPT])  # the .pte script runs measure_bundle.py's driver
    atomic_write_json(out_dir / "manifest.json", manifest)
    atomic_write_text(
        out_dir / "README.txt",
        (
            f"hwnas latency bundle (ExecuTorch .pte, XNNPACK delegate, executorch {executorch_version()}): {len(specs)} "
            f"blocks + {len(archs)} calibration subnets of space {space.name} for device profile {profile.name}.\n\n"
            f"On the device (python3 with the executorch package):\n    python3 {PTE_SCRIPT} . --out results.csv\n\n"
            f"Then copy results.csv and results.meta.json back and run:\n"
            f"    hwnas profile --import results.csv --device {profile.name}\n"
        ),
    )
    return manifest
