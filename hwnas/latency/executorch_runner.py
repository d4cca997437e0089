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

Lowering is slow (seconds of CPU per program: torch.export's decompositions and the XNNPACK passes dominate, not the
model size), timing is fast. So `ExecuTorchRunner.prepare` lowers every program a profile or validation will load up
front, in one worker process per core (the biggest first, so the workers finish together), with a progress bar, into
`cache_dir` (`hwnas.latency.pte_cache`: keyed by what fixes a program's latency, for timing only) or, without one,
into memory until `load()` takes them. The workers run `lower_for_timing`: BatchNorms folded before export rather
than by XNNPACK (the same delegate graph, `fold_batchnorm`), and minus work that cannot change the result (the
edge-IR verifier, and what `hwnas.latency.lean_lowering` skips, both byte-identical, tested): a fraction of the CPU
of `pte_bytes` (docs/executorch.md). `hwnas export --format pte` calls `pte_bytes` on its own model and never reads a
cache: its weights matter.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.latency.lean_lowering import lean_lowering
from hwnas.latency.profiles import DeviceProfile
from hwnas.latency.pte_cache import cache_key, read_cached, write_cached
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
    "lower_for_timing",
    "fold_batchnorm",
    "LoweringStats",
    "default_workers",
    "MISSING_EXTRA",
]

log = logging.getLogger(__name__)
MISSING_EXTRA = "pip install 'hwnas[mobile]'"


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Importing the XNNPACK partitioner logs a torch deprecation notice about one of its enums (torch's logger, not
    `warnings`): it concerns the library pairing, not the user's run, so it is kept off the console."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def require_executorch(what: str = "the executorch runtime") -> None:
    """Import ExecuTorch or raise a one-line HwnasError naming the extra that installs it."""
    try:
        with _quiet_import():
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


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """The runtime's C++ threadpool logs its CPU probing ("Reading file /sys/...", "Resetting threadpool") straight
    to file descriptor 2; hwnas logs the outcome itself, so that descriptor points at /dev/null meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def thread_count() -> int:
    """Size of ExecuTorch's process-wide threadpool, which the XNNPACK delegate runs on."""
    require_executorch()
    with _quiet_native_stderr():
        return int(_portable_lib()._threadpool_get_thread_count())


def set_threads(threads: int) -> None:
    """Resize ExecuTorch's threadpool (XNNPACK's) to `threads`. Call before loading methods (see module docstring)."""
    require_executorch()
    lib = _portable_lib()
    with _quiet_native_stderr():
        changed = int(lib._threadpool_get_thread_count()) != threads
        if changed:
            lib._unsafe_reset_threadpool(int(threads))
    if changed:
        log.info("ExecuTorch threadpool set to %d threads", threads)


def pte_bytes(model: nn.Module, input_shape: tuple[int, ...], *, check_ir: bool = True) -> bytes:
    """Lower `model` (eval mode, static shape) to an XNNPACK-delegated ExecuTorch program and return the .pte bytes.

    `check_ir=False` skips ExecuTorch's edge-dialect verifier, which only checks the graph (the bytes are the same,
    tested); `hwnas export` keeps it on."""
    require_executorch("lowering to .pte")
    with _quiet_import():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(model, (torch.zeros(input_shape),))
        edge = to_edge_transform_and_lower(
            exported,
            partitioner=[XnnpackPartitioner()],
            compile_config=EdgeCompileConfig(_check_ir_validity=check_ir),
        )
        program = edge.to_executorch()
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


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every conv → BatchNorm pair folded into the conv, as XNNPACK's own
    FuseBatchNormPass folds them while lowering: the delegate graph comes out the same — same XNNPACK nodes, parameters
    and tensor shapes, measured on mbv3-tiny blocks and subnets — with a third fewer nodes for every pass before it to
    walk. Only the folded weights' rounding differs, which fp32 latency does not see. A module torch.fx cannot trace
    is returned as it is."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model.eval())
    except Exception:  # symbolic tracing fails on data-dependent control flow: lower the module unchanged
        log.debug("cannot trace %s to fold its BatchNorms; lowering it unfolded", type(model).__name__)
        return model


def lower_for_timing(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """What the runner lowers with: `pte_bytes` of `fold_batchnorm(model)`, without its IR checks and without the
    repeated work `hwnas.latency.lean_lowering` skips. Same XNNPACK program as `pte_bytes(model)` (see
    `fold_batchnorm`) for a fraction of the CPU (docs/executorch.md)."""
    with _quiet_import(), lean_lowering():  # lean_lowering imports ExecuTorch passes: keep its notice quiet
        return pte_bytes(fold_batchnorm(model), input_shape, check_ir=False)


def cached_pte_bytes(model: nn.Module, input_shape: tuple[int, ...], *, cache_dir: Path | None) -> bytes:
    """`pte_bytes`, or the program of the same cache key lowered before into `cache_dir` (timing only, see above)."""
    if cache_dir is None:
        return pte_bytes(model, input_shape)
    key = cache_key(model, input_shape)
    data = read_cached(cache_dir, key)
    if data is None:
        data = lower_for_timing(model, input_shape)
        write_cached(cache_dir, key, data)
    return data


def _timed_lowering(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[bytes, float]:
    started = time.process_time()
    data = lower_for_timing(model, input_shape)
    return data, time.process_time() - started


def _lower_job(job: bytes) -> tuple[bytes, float]:
    """A worker's task: a plainly pickled (model, input shape). Plain pickle, not the executor's own: torch registers
    multiprocessing reducers that pass every tensor as a shared-memory file descriptor, which both processes keep
    open, so a few hundred models would exhaust the open-file limit."""
    model, input_shape = pickle.loads(job)
    return _timed_lowering(model, input_shape)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class LoweringStats:
    """What `ExecuTorchRunner.prepare` did: programs asked for, found in the cache, lowered, and what it cost.

    `seconds` is wall time; `cpu_seconds_per_program` the mean CPU time of one lowering inside a worker (what a
    loaded machine inflates least)."""

    programs: int
    cache_hits: int
    lowered: int
    workers: int
    seconds: float
    cpu_seconds_per_program: float | None
    cache_dir: str | None

    def to_meta(self) -> dict[str, Any]:
        return {
            "programs": self.programs,
            "cache_hits": self.cache_hits,
            "lowered": self.lowered,
            "workers": self.workers,
            "seconds": round(self.seconds, 1),
            "cpu_seconds_per_program": None
            if self.cpu_seconds_per_program is None
            else round(self.cpu_seconds_per_program, 3),
            "cache_dir": self.cache_dir,
        }


class ExecuTorchRunner:
    """ExecuTorch runtime with the XNNPACK CPU delegate; the threadpool is set to `profile.threads` on creation.

    `cache_dir` keeps lowered programs on disk across runs (`hwnas.latency.pte_cache`); `workers` processes lower
    what `prepare` is asked for (default: one per core). Call `close()` to stop them when done.
    """

    def __init__(self, profile: DeviceProfile, *, cache_dir: Path | None = None, workers: int | None = None) -> None:
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
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = default_workers() if workers is None else max(1, workers)
        self._pending: dict[str, bytes] = {}  # lowered by prepare() without a cache_dir, until load() takes them
        self._pool: Executor | None = None
        set_threads(profile.threads)

    def _have(self, key: str) -> bool:
        if key in self._pending:
            return True
        return self.cache_dir is not None and read_cached(self.cache_dir, key) is not None

    def _store(self, key: str, data: bytes) -> None:
        if self.cache_dir is not None:
            write_cached(self.cache_dir, key, data)
        else:
            self._pending[key] = data

    def prepare(self, models: Sequence[tuple[nn.Module, tuple[int, ...]]], *, progress: bool = False) -> LoweringStats:
        """Lower every program of `models` that is neither cached nor pending, in `workers` processes (in-process when
        only one is missing or `workers` is 1), so the `load()` calls that follow find them all."""
        started = time.monotonic()
        missing: dict[str, tuple[nn.Module, tuple[int, ...]]] = {}
        keys = set()
        for model, shape in models:
            key = cache_key(model, shape)
            keys.add(key)
            if key not in missing and not self._have(key):
                missing[key] = (model.eval(), tuple(shape))
        # Biggest first (module count ~ lowering time), so no worker is left with a whole subnet at the end.
        order = sorted(missing, key=lambda k: -sum(1 for _ in missing[k][0].modules()))
        workers = min(self.workers, len(missing)) if len(missing) > 1 else 1
        cpu: list[float] = []
        from tqdm import tqdm

        hits = len(keys) - len(missing)
        with tqdm(
            total=len(missing), desc="lower .pte", unit="program", disable=not progress or not missing, leave=False
        ) as bar:
            bar.set_postfix(cached=hits, workers=workers)
            if workers == 1:
                for key in order:
                    data, seconds = _timed_lowering(*missing[key])
                    self._store(key, data)
                    cpu.append(seconds)
                    bar.update(1)
            else:
                pool = self._worker_pool()
                queue = iter(order)
                running: dict[Future[tuple[bytes, float]], str] = {}
                try:
                    while True:
                        # two jobs per worker in flight: workers never wait, pickled models do not pile up
                        for key in itertools.islice(queue, 2 * workers - len(running)):
                            running[pool.submit(_lower_job, pickle.dumps(missing[key]))] = key
                        if not running:
                            break
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in done:
                            data, seconds = future.result()
                            self._store(running.pop(future), data)
                            cpu.append(seconds)
                            bar.update(1)
                except BaseException:
                    # A failed lowering, a dead worker or Ctrl-C: drop the pool without waiting on its workers (they
                    # exit when their queue closes); a later prepare() starts a new one.
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                    raise
        stats = LoweringStats(
            programs=len(keys),
            cache_hits=hits,
            lowered=len(missing),
            workers=workers if missing else 0,
            seconds=time.monotonic() - started,
            cpu_seconds_per_program=sum(cpu) / len(cpu) if cpu else None,
            cache_dir=None if self.cache_dir is None else str(self.cache_dir),
        )
        if missing:
            log.info(
                "lowered %d programs in %d processes in %.1f s (%.2f CPU s each); %d of %d were cached%s",
                stats.lowered,
                workers,
                stats.seconds,
                stats.cpu_seconds_per_program or 0.0,
                stats.cache_hits,
                stats.programs,
                f" in {self.cache_dir}" if self.cache_dir is not None else "",
            )
        return stats

    def _worker_pool(self) -> Executor:
        """One pool for the runner's life: validation prepares chunk after chunk, and starting a worker costs seconds
        (importing torch and ExecuTorch, the first lowering)."""
        if self._pool is None:
            from hwnas.latency.runtime import export_pool

            self._pool = export_pool(self.workers)
        return self._pool

    def close(self) -> None:
        """Stop the lowering workers (a later `prepare` starts new ones); prepared programs stay loadable."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def program(self, model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
        key = cache_key(model, input_shape)
        data = self._pending.pop(key, None)
        if data is None and self.cache_dir is not None:
            data = read_cached(self.cache_dir, key)
        if data is None:
            data = lower_for_timing(model, input_shape)
            if self.cache_dir is not None:
                write_cached(self.cache_dir, key, data)
        return data

    def load(self, model: nn.Module, input_shape: tuple[int, ...]) -> Loaded:
        return load_pte(self.program(model, input_shape), input_shape)
