"""Runners: one interface over the runtimes a device profile can name (onnxruntime CPU/CUDA EP, torch eager).

A runner turns a static `nn.Module` plus an input shape into a zero-argument `run()` that executes one inference
synchronously (outputs ready when it returns). The timing harness only ever sees such callables, which is what lets tests
pass fake runners and lets a new runtime plug in as one more class: write `load(model, input_shape) -> Loaded`, add it to
`_RUNNERS` (an ExecuTorch runner would `torch.export` + lower to XNNPACK in `load` and call the .pte method in `run`).
"""

from __future__ import annotations

import functools
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.latency.profiles import DeviceProfile
from hwnas.space import BlockSpec

__all__ = [
    "Loaded",
    "Runner",
    "OrtRunner",
    "TorchRunner",
    "make_runner",
    "onnx_bytes",
    "export_many",
    "export_pool",
    "block_onnx_bytes",
    "OPSET",
]

OPSET = 17
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A model ready to time: `run()` does one synchronous inference; `release()` frees the session / device memory."""

    run: Callable[[], object]
    release: Callable[[], None]


class Runner(Protocol):
    profile: DeviceProfile

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Loaded: ...


def onnx_bytes(
    model: nn.Module, input_shape: tuple[int, ...], *, output_name: str = "output", dynamic_batch: bool = False
) -> bytes:
    """Export `model` to ONNX (opset `OPSET`): the one exporter behind timed blocks, bundles and shipped models.

    Static shapes by default (what the LUT times and the bundle ships); `dynamic_batch` makes axis 0 of the input and
    the output symbolic (what `hwnas export` ships). The TorchScript exporter (dynamo=False): the dynamo exporter needs
    onnxscript, which hwnas does not install.
    """
    model = model.eval()
    buffer = io.BytesIO()
    axes = {"input": {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(input_shape),),
            buffer,  # type: ignore[arg-type]  # a file object is accepted, the stubs say path only
            opset_version=OPSET,
            dynamo=False,
            input_names=["input"],
            output_names=[output_name],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return buffer.getvalue()


Quantizer = Callable[[bytes, np.ndarray], bytes]  # fp32 ONNX bytes + calibration inputs -> int8 ONNX bytes


class OrtRunner:
    """onnxruntime: each model exported alone to ONNX and run in its own session (CPU or CUDA execution provider).

    An int8 profile (``dtype: int8``) quantizes every model before timing with the injected `quantize` — the
    command line passes `hwnas.export.int8.quantize_onnx_bytes`, the same static QDQ quantizer `hwnas export --int8`
    ships with (injected because export sits above latency in the layering).
    """

    def __init__(self, profile: DeviceProfile, *, quantize: Quantizer | None = None) -> None:
        import onnxruntime as ort

        self.profile = profile
        self._ort = ort
        if profile.dtype == "int8" and quantize is None:
            raise HwnasError(
                f"profile {profile.name}: dtype int8 needs a quantizer; run it through 'hwnas profile' or "
                "'hwnas latency validate' (they quantize every block like 'hwnas export --int8')"
            )
        self._quantize = quantize if profile.dtype == "int8" else None
        available = ort.get_available_providers()
        wanted = "CUDAExecutionProvider" if profile.provider == "cuda" else "CPUExecutionProvider"
        if wanted not in available:
            raise HwnasError(
                f"profile {profile.name} needs onnxruntime's {wanted}, available: {', '.join(available)}; "
                "install onnxruntime-gpu on a machine with a CUDA GPU, or use --device cpu-ort-1t"
            )
        self._providers = [wanted]

    def session_options(self) -> object:
        so = self._ort.SessionOptions()
        so.intra_op_num_threads = self.profile.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return so

    def load_onnx(self, data: bytes, input_shape: tuple[int, ...]) -> Loaded:
        if self._quantize is not None:
            # Activation ranges from random inputs: fine for timing (int8 kernel speed does not depend on the values).
            calib = np.random.default_rng(1).standard_normal((4 * input_shape[0], *input_shape[1:])).astype(np.float32)
            data = self._quantize(data, calib)
        session = self._ort.InferenceSession(data, sess_options=self.session_options(), providers=self._providers)
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
        holder = [session]

        def run() -> object:
            return holder[0].run(None, feed)

        def release() -> None:
            holder.clear()

        return Loaded(run, release)

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Loaded:
        return self.load_onnx(onnx_bytes(model, input_shape), input_shape)


class TorchRunner:
    """PyTorch eager in inference mode. Sets torch's intra-op thread count (process-wide) to the profile's."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        if profile.provider == "cuda" and not torch.cuda.is_available():
            raise HwnasError(
                f"profile {profile.name} needs a CUDA GPU and a CUDA build of torch, but "
                "torch.cuda.is_available() is False here; use --device cpu-torch-1t or cpu-ort-1t"
            )
        self.device = torch.device("cuda" if profile.provider == "cuda" else "cpu")
        if profile.provider == "cpu":
            torch.set_num_threads(profile.threads)

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Loaded:
        holder = [model.eval().to(self.device)]
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).to(self.device)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else None

        def run() -> object:
            with torch.inference_mode():
                out = holder[0](x)
            if sync is not None:
                sync()
            return out

        def release() -> None:
            holder.clear()

        return Loaded(run, release)


def _executorch_runner(profile: DeviceProfile) -> Runner:
    from hwnas.latency.executorch_runner import ExecuTorchRunner  # optional extra: hwnas[mobile]

    return ExecuTorchRunner(profile)


_RUNNERS: dict[str, Callable[[DeviceProfile], Runner]] = {
    "onnxruntime": OrtRunner,
    "torch": TorchRunner,
    "executorch": _executorch_runner,
}


def make_runner(profile: DeviceProfile, *, quantize: Quantizer | None = None) -> Runner:
    """The runner for `profile.runtime` (one of the plug-ins in `_RUNNERS`); `quantize` serves int8 ORT profiles."""
    if profile.runtime not in _RUNNERS:
        raise HwnasError(
            f"profile {profile.name}: runtime {profile.runtime!r} has no local runner yet "
            f"(available: {', '.join(_RUNNERS)}); time it on the device with 'hwnas bundle'"
        )
    if profile.runtime == "onnxruntime":
        return OrtRunner(profile, quantize=quantize)
    return _RUNNERS[profile.runtime](profile)


@functools.lru_cache(maxsize=1024)
def block_onnx_bytes(spec: BlockSpec, shape: tuple[int, ...]) -> bytes:
    """A block's ONNX export, cached per (signature, shape): profiling, bundling and tests reuse it within a process
    (weights are random; latency does not depend on their values)."""
    from hwnas.blocks import build_block

    return onnx_bytes(build_block(spec), shape)


def _export_job(job: tuple[object, object, tuple[int, ...]]) -> bytes:
    from hwnas.blocks import build_model
    from hwnas.space import Arch

    space, obj, shape = job
    if isinstance(obj, Arch):
        return onnx_bytes(build_model(space, obj), shape)  # type: ignore[arg-type]
    return block_onnx_bytes(obj, shape)  # type: ignore[arg-type]


def _worker_init() -> None:
    torch.set_num_threads(1)


def export_many(
    jobs: Sequence[tuple[object, object, tuple[int, ...]]], *, workers: int, pool: Executor | None = None
) -> Iterator[bytes]:
    """ONNX bytes for each (space, BlockSpec | Arch, input shape), in order, exported by `workers` processes.

    Export (tracing + ONNX passes) dominates profiling time and is embarrassingly parallel; timing is not, so it
    happens afterwards in the parent process. Small jobs run in-process: starting a worker (importing torch) costs more
    than it saves. Pass `pool` (from `export_pool`) to reuse workers across calls.
    """
    if pool is not None:
        yield from pool.map(_export_job, jobs, chunksize=2)
    elif workers <= 1 or len(jobs) < 100:
        yield from map(_export_job, jobs)
    else:
        with export_pool(workers) as new_pool:
            yield from new_pool.map(_export_job, jobs, chunksize=2)


def export_pool(workers: int) -> Executor:
    """Worker processes for `export_many` (spawned: forking after torch/ORT thread pools exist can deadlock)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )
