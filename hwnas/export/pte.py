"""Static subnet → XNNPACK-delegated ExecuTorch program (`model.pte`): the file an Android/iOS app loads.

Alongside ONNX, not instead: `hwnas export --format pte` writes both. The `.pte` is lowered from the same eval-mode
module as the ONNX file (never from the timing cache, whose weights belong to another model), checked against torch on
the same real test images (max |diff|, top-1 agreement), and timed on an ExecuTorch profile with the LUT harness next to
that profile's LUT prediction. ExecuTorch is an optional extra: without it this module raises one HwnasError naming
`pip install 'hwnas[mobile]'`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.atomic import atomic_write_bytes
from hwnas.errors import HwnasError
from hwnas.export.onnx import on_cpu
from hwnas.export.parity import ParityResult, require_parity, torch_logits
from hwnas.space import Arch, SpaceSpec, check_arch

__all__ = [
    "PTE_TARGET",
    "PTE_MAX_ABS_DIFF",
    "PteResult",
    "export_pte",
    "pte_logits",
    "check_pte_parity",
    "measure_pte_ms",
    "export_pte_checked",
]

log = logging.getLogger(__name__)
PTE_TARGET = "cpu-et-xnnpack-1t"  # the executorch profile a .pte is timed on by default
PTE_MAX_ABS_DIFF = 1e-4


@dataclass(frozen=True, slots=True)
class PteResult:
    path: Path
    parity: ParityResult
    device: str | None
    measured_ms: float | None
    predicted_ms: float | None
    lut: str | None

    def card(self) -> dict[str, Any]:
        """The `pte` entry of model_card.json."""
        from hwnas.export.card import file_sha256
        from hwnas.latency.executorch_runner import executorch_version

        err = (
            None if not (self.predicted_ms and self.measured_ms) else round(self.predicted_ms / self.measured_ms - 1, 4)
        )
        return {
            "file": {"path": self.path.name, "bytes": self.path.stat().st_size, "sha256": file_sha256(self.path)},
            "runtime": f"executorch {executorch_version()}",
            "delegate": "XnnpackPartitioner",
            "batch": 1,
            "input": "input (1, C, H, W) float32, same preprocess as the ONNX model",
            "output": "logits (1, classes)",
            "parity": {
                "max_abs_diff": self.parity.max_abs_diff,
                "mean_abs_diff": self.parity.mean_abs_diff,
                "top1_agreement": self.parity.top1_agreement,
                "n_images": self.parity.n_images,
            },
            "latency": {
                "device": self.device,
                "measured_ms": self.measured_ms,
                "predicted_ms": self.predicted_ms,
                "predicted_error": err,
                "lut": self.lut,
            },
        }


def export_pte(model: nn.Module, path: str | os.PathLike[str], *, space: SpaceSpec, arch: Arch) -> Path:
    """Lower the static net of `arch` (batch 1, static shape) to `path`, written atomically (from a CPU copy of a model
    that lives on a GPU: the program runs on a phone's CPU)."""
    from hwnas.latency.executorch_runner import pte_bytes

    check_arch(space, arch)
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    try:
        data = pte_bytes(on_cpu(model).eval(), shape)
    except HwnasError:
        raise
    except Exception as exc:  # torch.export / exir raise many types; the user can only report it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HwnasError(
            f"cannot lower arch {arch} to ExecuTorch: {first}; export ONNX only (drop --format pte)"
        ) from None
    dest = atomic_write_bytes(Path(path), data)
    log.info("wrote %s (%.1f KiB)", dest, len(data) / 1024)
    return dest


def pte_logits(path: str | os.PathLike[str], images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logits of the .pte at `path` for preprocessed NCHW images, one image per call (the program has batch 1)."""
    from hwnas.latency.executorch_runner import require_executorch

    require_executorch("running a .pte")
    from executorch.runtime import Runtime

    arr = (
        torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32))
        if isinstance(images, np.ndarray)
        else images.detach().float().contiguous()
    )
    if arr.ndim != 4 or len(arr) == 0:
        raise HwnasError(
            f"expected a non-empty NCHW image batch, got shape {tuple(arr.shape)}; pass preprocessed images"
        )
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return np.concatenate([method.execute((arr[i : i + 1],))[0].numpy() for i in range(len(arr))])


def check_pte_parity(model: nn.Module, path: str | os.PathLike[str], images: torch.Tensor | np.ndarray) -> ParityResult:
    """Eval-mode torch logits (float32 on the model's device: `torch_logits`) vs ExecuTorch logits on the same images."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)) if isinstance(images, np.ndarray) else images.float()
    ref = torch_logits(model, x)
    got = pte_logits(path, x.cpu())
    diff = np.abs(ref - got)
    return ParityResult(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
        n_images=len(x),
    )


def measure_pte_ms(path: str | os.PathLike[str], input_shape: tuple[int, ...], profile: Any) -> float:
    """p50 ms of a .pte on an executorch profile, with the LUT harness's protocol."""
    from hwnas.latency.executorch_runner import ExecuTorchRunner, load_pte
    from hwnas.latency.harness import time_loaded

    if profile.runtime != "executorch":
        raise HwnasError(
            f"profile {profile.name} times runtime {profile.runtime}, not a .pte; use an executorch "
            f"profile such as {PTE_TARGET}"
        )
    ExecuTorchRunner(profile)  # validates the profile and sets the threadpool before the program is loaded
    return time_loaded(load_pte(Path(path), input_shape), profile).p50_ms


def export_pte_checked(
    model: nn.Module,
    out_dir: Path,
    *,
    space: SpaceSpec,
    arch: Arch,
    images: torch.Tensor,
    target: str | None = PTE_TARGET,
    lut: Path | None = None,
) -> PteResult:
    """`model.pte` in `out_dir`: lower, parity-check on `images` against `model` on its own device, time on the
    executorch profile `target` next to its LUT prediction (None: no timing)."""
    from hwnas.latency.profiles import load_profile

    profile = load_profile(target) if target is not None else None
    if profile is not None and profile.runtime != "executorch":
        raise HwnasError(
            f"--pte-target {profile.name} uses runtime {profile.runtime}; choose an executorch profile "
            f"such as {PTE_TARGET}"
        )
    path = export_pte(model, out_dir / "model.pte", space=space, arch=arch)
    parity = check_pte_parity(model, path, images)
    require_parity(parity, what=".pte", arch=arch, limit=PTE_MAX_ABS_DIFF)
    measured = predicted = lut_used = None
    if profile is not None:
        from hwnas.export.latency import predicted_ms_for

        measured = measure_pte_ms(path, (1, space.in_channels, arch.resolution, arch.resolution), profile)
        predicted, lut_used = predicted_ms_for(space, arch, lut=lut, target=profile.name)
        log.info(
            ".pte latency on %s: measured %.4f ms, predicted %s ms",
            profile.name,
            measured,
            "n/a" if predicted is None else f"{predicted:.4f}",
        )
    return PteResult(path, parity, None if profile is None else profile.name, measured, predicted, lut_used)
