#!/usr/bin/env python3
"""Time an hwnas ExecuTorch (.pte) latency bundle on the device it runs on. Needs only the ExecuTorch runtime (the
`executorch` Python package, which brings torch for tensors), not hwnas.

    python3 measure_bundle_pte.py BUNDLE_DIR [--out results.csv] [--threads N] [--rounds R] [--repeats N]
                                             [--warmup-s S] [--clock thread|wall] [--seed S]

Everything but loading the programs is measure_bundle.py's (bundled next to this script), and all timing is
protocol.py's — the code `hwnas profile` times with. XNNPACK's threadpool is resized to --threads (default: the
profile's) before any program is loaded. Writes results.csv and results.meta.json; bring both back and run
`hwnas profile --import results.csv --device NAME`.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # measure_bundle.py and protocol.py lie next to it
from measure_bundle import Run, measure_bundle  # noqa: E402


def load_programs(bundle: str, items: Sequence[dict[str, Any]], threads: int) -> dict[str, Run]:
    """One loaded `forward` method per program, with a fixed random input."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import executorch.extension.pybindings.portable_lib as lib
        from executorch.runtime import Runtime
    if lib._threadpool_get_thread_count() != threads:
        lib._unsafe_reset_threadpool(threads)  # before any method is loaded: loaded methods keep the old pool
    runtime = Runtime.get()
    gen = torch.Generator().manual_seed(0)
    runs: dict[str, Run] = {}
    for item in items:
        program = runtime.load_program(os.path.join(bundle, item["file"]))
        method = program.load_method("forward")
        inputs = (torch.randn(item["input_shape"], generator=gen),)
        runs[item["key"]] = functools.partial(_execute, program, method, inputs)
    return runs


def _execute(program: Any, method: Any, inputs: tuple[Any, ...]) -> object:
    """Run `method`; `program` is only held, so that it lives as long as its method."""
    return method.execute(inputs)


def pte_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"executorch": version("executorch")}


if __name__ == "__main__":
    sys.exit(
        measure_bundle(
            sys.argv[1:],
            fmt="pte",
            script="measure_bundle_pte.py",
            description=(__doc__ or "").split("\n\n")[0],
            load=load_programs,
            versions=pte_versions,
        )
    )
