"""Static subnet → ONNX file that a deployer can load anywhere: opset 17, dynamic batch axis, arch in the metadata.

The arch string (and the space it belongs to) travel inside the file as `metadata_props`, so a model found on disk months
later still says exactly what it is; `read_onnx_metadata` reads them back. Every file is written atomically and passes
`onnx.checker` before it is renamed into place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx
from torch import nn

from hwnas.atomic import atomic_path
from hwnas.errors import HwnasError
from hwnas.latency.runtime import OPSET, onnx_bytes
from hwnas.space import Arch, SpaceSpec, check_arch, space_hash

__all__ = [
    "OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "export_onnx",
    "check_onnx",
    "read_onnx_metadata",
    "ort_session",
    "on_cpu",
]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def on_cpu(model: nn.Module) -> nn.Module:
    """`model` itself when it lives on the CPU, else a CPU copy: exported files are traced on the CPU whatever device
    fine-tuned the model (the model itself stays where it is, for the parity reference)."""
    if all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers())):
        return model
    import copy

    return copy.deepcopy(model).cpu()


def _to_onnx_proto(model: nn.Module, input_shape: tuple[int, ...], *, dynamic_batch: bool) -> onnx.ModelProto:
    return onnx.load_from_string(onnx_bytes(model, input_shape, output_name=OUTPUT_NAME, dynamic_batch=dynamic_batch))


def check_onnx(path: str | os.PathLike[str]) -> None:
    """`onnx.checker` with full shape inference; a failure is reported as an HwnasError naming the file."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HwnasError(f"onnx.checker rejected {path}: {first}; re-export the model") from None


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    space: SpaceSpec,
    arch: Arch,
    dynamic_batch: bool = True,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export `model` (the static net of `arch`) to `path`; returns the path after `onnx.checker` has passed.

    Input is ``input`` of shape (batch, space.in_channels, r, r) float32, already normalized (see the model card's
    ``preprocess``); output is ``logits`` (batch, num_classes).
    """
    check_arch(space, arch)
    shape = (1, space.in_channels, arch.resolution, arch.resolution)
    try:
        proto = _to_onnx_proto(on_cpu(model), shape, dynamic_batch=dynamic_batch)
    except RuntimeError as exc:
        raise HwnasError(
            f"cannot export arch {arch} to ONNX: {str(exc).splitlines()[0]}; check the model matches the arch"
        ) from None
    props = {
        "hwnas.arch": str(arch),
        "hwnas.space": space.name,
        "hwnas.space_hash": space_hash(space),
        "hwnas.space_width": str(space.width),
        "hwnas.input_shape": "x".join(str(d) for d in shape[1:]),
    }
    props.update(metadata or {})
    onnx.helper.set_model_props(proto, props)
    proto.producer_name = "hwnas"
    proto.doc_string = f"hwnas subnet {arch} of space {space.name}"
    dest = Path(path)
    with atomic_path(dest, suffix=".onnx") as tmp:
        onnx.save(proto, str(tmp))
        check_onnx(tmp)
    log.info("wrote %s (%.1f KiB)", dest, dest.stat().st_size / 1024)
    return dest


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `metadata_props` of an ONNX file (e.g. ``["hwnas.arch"]``)."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"ONNX file {p} not found; run 'hwnas export' first")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise HwnasError(f"cannot read ONNX file {p}: {type(exc).__name__}; re-export it") from None
    return {prop.key: prop.value for prop in proto.metadata_props}


def ort_session(
    path: str | os.PathLike[str], *, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",)
):  # type: ignore[no-untyped-def]
    """An onnxruntime session with a fixed thread count (the default, 1 intra-op thread, times most stably)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise HwnasError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}; re-export it") from None
