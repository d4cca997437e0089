"""The ExecuTorch variant of `hwnas bundle`: block `.pte` programs + manifest + `measure_bundle_pte.py` (with
`measure_bundle.py` and `protocol.py`, which it runs).

Same layout and manifest as the ONNX bundle (`hwnas.latency.bundle`), so `hwnas profile --import results.csv` reads the
results unchanged; only the model files (XNNPACK-delegated `.pte`, lowered by the same `pte_bytes` that times blocks
locally) and the measuring script differ. The script needs the ExecuTorch runtime only — the `executorch` wheel on an
ARM Linux board, or its `executor_runner` on Android (the manifest lists each file's input shape for that). Whole-
subnet bundles, held-out subnets and drift references (`--whole-subnets`, `--validate`) work as for ONNX bundles.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwnas.atomic import atomic_write_bytes, atomic_write_json
from hwnas.errors import HwnasError
from hwnas.latency.bundle import (
    SCRIPT,
    BundlePlan,
    bundle_manifest,
    copy_device_files,
    device_script_path,
    plan_bundle,
    write_bundle_readme,
)
from hwnas.latency.profiles import DeviceProfile
from hwnas.space import Arch, SpaceSpec

__all__ = ["write_pte_bundle", "pte_script_path", "PTE_SCRIPT"]

log = logging.getLogger(__name__)
PTE_SCRIPT = "measure_bundle_pte.py"


def pte_script_path() -> Path:
    return device_script_path(PTE_SCRIPT)


def write_pte_bundle(
    space: SpaceSpec,
    profile: DeviceProfile,
    out_dir: Path,
    *,
    plan: BundlePlan | None = None,
    resolutions: Sequence[int] | None = None,
    calib_subnets: int | None = None,
    keys: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Lower the bundle's models to `.pte` in `out_dir` and return the manifest.

    `plan` (`hwnas.latency.bundle.plan_bundle`: blocks or whole subnets, held-out subnets, references) defaults to a
    block bundle at `resolutions` with `calib_subnets`. `keys` restricts a block bundle to these block keys (a partial
    bundle, e.g. to check a device quickly; its results cannot be imported as a full table). Programs are lowered in
    worker processes (`ExecuTorchRunner.prepare`); `cache_dir` reuses and keeps those lowered for timing.
    """
    from hwnas.blocks import build_block, build_model
    from hwnas.latency.executorch_runner import ExecuTorchRunner, executorch_version, require_executorch

    require_executorch(f"an ExecuTorch bundle for {profile.name}")
    if profile.runtime != "executorch":
        raise HwnasError(
            f"profile {profile.name} uses runtime {profile.runtime}; a .pte bundle needs runtime executorch"
        )
    if plan is None:
        plan = plan_bundle(space, profile, resolutions=resolutions, calib_subnets=calib_subnets)
    elif resolutions is not None or calib_subnets is not None:
        raise HwnasError("write_pte_bundle takes either a plan or resolutions/calib_subnets, not both")
    if keys is not None:
        unknown = [k for k in keys if k not in plan.blocks]
        if unknown:
            raise HwnasError(
                f"block {unknown[0]!r} is not in space {space.name} at {list(plan.resolutions)}; "
                "list blocks with 'hwnas space show'"
            )
        plan = dataclasses.replace(plan, blocks={k: plan.blocks[k] for k in keys})
    jobs = plan.jobs(space, profile.batch)
    models = [(build_model(space, obj) if isinstance(obj, Arch) else build_block(obj), shape) for _, obj, shape in jobs]
    runner = ExecuTorchRunner(profile, cache_dir=cache_dir)
    items = []
    try:
        runner.prepare(models, progress=progress)  # in worker processes, what the cache lacks
        for n, ((key, obj, shape), (model, _)) in enumerate(zip(jobs, models)):
            kind = key.split(":", 1)[0] if isinstance(obj, Arch) else "block"
            rel = f"{kind}s/{n:04d}.pte"
            atomic_write_bytes(out_dir / rel, runner.program(model, shape))
            items.append({"key": key, "kind": kind, "file": rel, "input_shape": list(shape)})
    finally:
        runner.close()
    manifest = bundle_manifest(
        space,
        profile,
        plan,
        items,
        format="pte",
        script=PTE_SCRIPT,
        executorch=executorch_version(),
        delegate="XnnpackPartitioner",
        complete=keys is None,
    )
    copy_device_files(out_dir, [PTE_SCRIPT, SCRIPT])  # the .pte script runs measure_bundle.py's driver
    atomic_write_json(out_dir / "manifest.json", manifest)
    write_bundle_readme(
        out_dir,
        manifest,
        needs=f"python3 with the executorch package {executorch_version()}: .pte programs, XNNPACK delegate",
    )
    return manifest
