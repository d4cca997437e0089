"""ExecuTorch + XNNPACK: the runtime Android/iOS apps ship, as one more runner behind `hwnas.latency.runtime`.

A model is lowered the way a mobile app's model is: `torch.export` → `to_edge_transform_and_lower(partitioner=
[XnnpackPartitioner()])` → `to_executorch()` → `.pte` bytes, then loaded and run by the ExecuTorch C++ runtime through
`executorch.runtime.Runtime`. The timing harness, LUT, calibration, validation and bundle code are shared with the other
runtimes: only `load()` differs.

Threads. XNNPACK runs on ExecuTorch's process-wide pthreadpool (size = number of cores by default). Python can resize it
with `executorch.extension.pybindings.portable_lib._unsafe_reset_threadpool(n)` and read it back with
`_threadpool_get_thread_count()` (the process's OS threads follow the new size). "Unsafe" because a
method loaded before the reset keeps a pointer to the old pool, so the runner resets the pool when it is created, before
it loads anything, and a method must never be run after a runner with another thread count was created. With one thread
pthreadpool runs everything on the calling thread, so the "thread" clock is valid for `cpu-et-xnnpack-1t`.

Lowering is slow (seconds per block, tens of seconds per whole mbv3 subnet: torch.export's decompositions and the
XNNPACK passes dominate, not the model size). `cache_dir` keeps lowered programs on disk keyed by
the module's structure and input shape — for *timing only*: the weights of a cached program are those of the first model
with that structure, which changes nothing for fp32 XNNPACK latency but everything for accuracy, so export code never
uses the cache. `ExecuTorchRunner.prepare` lowers what the cache lacks in 2 processes before a profile or validation
loads it (the programs are byte-identical to those lowered in-process).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.atomic import atomic_write_bytes
from hwnas.errors import HwnasError
from hwnas.latency.profiles import DeviceProfile
from hwnas.latency.runtime import Loaded

__all__ = [
    "ExecuTorchRunner",
    "require_executorch",
    "executorch_version",
    "pte_bytes",
    "load_pte",
    "set_threads",
    "thread_count",
    "cached_pte_bytes",
    "structure_key",
    "MISSING_EXTRA",
]

log = logging.getLogger(__name__)
MISSING_EXTRA = "pip install 'hwnas[mobile]'"


def require_executorch(what: str = "the executorch runtime") -> None:
    """Import ExecuTorch or raise a one-line HwnasError naming the extra that installs it."""
    try:
        import executorch.runtime  # noqa: F401
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
    except ImportError as exc:
        raise HwnasError(
            f"{what} needs ExecuTorch, which is not installed ({exc.name or 'executorch'} missing); {MISSING_EXTRA}"
        ) from None


def executorch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch")
    except PackageNotFoundError:
        return "not installed"


def _portable_lib() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "This API is experimental" on import
        import executorch.extension.pybindings.portable_lib as lib
    return lib


def thread_count() -> int:
    """Size of ExecuTorch's process-wide threadpool, which the XNNPACK delegate runs on."""
    require_executorch()
    return int(_portable_lib()._threadpool_get_thread_count())


def set_threads(threads: int) -> None:
    """Resize ExecuTorch's threadpool (XNNPACK's) to `threads`. Call before loading methods (see module docstring)."""
    require_executorch()
    lib = _portable_lib()
    if int(lib._threadpool_get_thread_count()) != threads:
        lib._unsafe_reset_threadpool(int(threads))
        log.info("ExecuTorch threadpool set to %d threads", threads)


def pte_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """Lower `model` (eval mode, static shape) to an XNNPACK-delegated ExecuTorch program and return the .pte bytes."""
    require_executorch("lowering to .pte")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, (torch.zeros(input_shape),))
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    return bytes(program.buffer)


def load_pte(data: bytes | Path, input_shape: tuple[int, ...], *, seed: int = 0) -> Loaded:
    """Load a .pte (bytes or path) with the ExecuTorch runtime; `run()` executes `forward` on a fixed random input."""
    require_executorch()
    from executorch.runtime import Runtime

    runtime = Runtime.get()
    try:
        program = runtime.load_program(data if isinstance(data, bytes) else str(data))
        method = program.load_method("forward")
    except RuntimeError as exc:
        raise HwnasError(
            f"ExecuTorch cannot load the program ({str(exc).splitlines()[0]}); re-export it with "
            f"executorch {executorch_version()}"
        ) from None
    if method is None:
        raise HwnasError("the .pte has no 'forward' method; re-export it with 'hwnas export --format pte'")
    inputs = (torch.randn(input_shape, generator=torch.Generator().manual_seed(seed)),)
    holder: list[Any] = [program, method]

    def run() -> object:
        return holder[1].execute(inputs)

    def release() -> None:
        holder.clear()

    return Loaded(run, release)


def structure_key(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """Cache key of a lowered program for timing: module structure + input shape + toolchain versions (not weights)."""
    text = "\n".join((repr(model), repr(tuple(input_shape)), torch.__version__, executorch_version()))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_pte_bytes(model: nn.Module, input_shape: tuple[int, ...], *, cache_dir: Path | None) -> bytes:
    """`pte_bytes`, or the program of the same structure lowered before into `cache_dir` (timing only, see above)."""
    if cache_dir is None:
        return pte_bytes(model, input_shape)
    path = Path(cache_dir) / f"{structure_key(model, input_shape)}.pte"
    if path.is_file():
        return path.read_bytes()
    data = pte_bytes(model, input_shape)
    atomic_write_bytes(path, data)
    return data


def _lower_job(job: tuple[nn.Module, tuple[int, ...]]) -> bytes:
    return pte_bytes(*job)


class ExecuTorchRunner:
    """ExecuTorch runtime with the XNNPACK CPU delegate; the threadpool is set to `profile.threads` on creation."""

    def __init__(self, profile: DeviceProfile, *, cache_dir: Path | None = None) -> None:
        require_executorch(f"profile {profile.name} (runtime executorch)")
        if profile.provider != "cpu":
            raise HwnasError(
                f"profile {profile.name}: the executorch runner times the XNNPACK CPU delegate only; set provider: cpu"
            )
        if profile.dtype != "fp32":
            raise HwnasError(
                f"profile {profile.name}: dtype {profile.dtype} is not supported by the executorch runner "
                "yet; use dtype fp32"
            )
        self.profile = profile
        self.cache_dir = cache_dir
        set_threads(profile.threads)

    def prepare(self, models: list[tuple[nn.Module, tuple[int, ...]]], *, workers: int = 2) -> int:
        """Lower the programs `cache_dir` lacks in `workers` spawned processes, so the `load()` calls that follow hit
        the cache; returns how many were lowered. Lowering is single-threaded Python and dominates a profile or a
        validation, so 2 processes on 2 cores roughly halve it. No-op without a cache, with one worker, or with fewer
        than 2 programs to lower (starting a worker costs seconds)."""
        if self.cache_dir is None or workers <= 1:
            return 0
        missing: dict[str, tuple[nn.Module, tuple[int, ...]]] = {}
        for model, shape in models:
            key = structure_key(model, shape)
            if key not in missing and not (Path(self.cache_dir) / f"{key}.pte").is_file():
                missing[key] = (model.eval(), shape)
        if len(missing) < 2:
            return 0
        from hwnas.latency.runtime import export_pool

        with export_pool(min(workers, len(missing))) as pool:
            for key, data in zip(missing, pool.map(_lower_job, missing.values())):
                atomic_write_bytes(Path(self.cache_dir) / f"{key}.pte", data)
        log.info(
            "lowered %d programs in %d processes into %s", len(missing), min(workers, len(missing)), self.cache_dir
        )
        return len(missing)

    def program(self, model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
        return cached_pte_bytes(model, input_shape, cache_dir=self.cache_dir)

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Loaded:
        return load_pte(self.program(model, input_shape), input_shape)
