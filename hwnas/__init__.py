"""hwnas: hardware-aware mobile model search.

Build a latency table for a device, train a weight-sharing supernet once (or import one, `hwnas import-ofa`), search the
most accurate subnet under a latency budget, and export it to ONNX with proof that it is correct and as fast as predicted.

Python API::

    import hwnas
    run = hwnas.load_run("runs/ofa-w1.0")          # a trained or imported run folder
    model = run.subnet("r160/k3e4,k5e6/...")       # its static torch.nn.Module (stored BN statistics), eval mode
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.train.checkpoint import LoadedRun, load_run

__all__ = ["HwnasError", "LoadedRun", "__version__", "load_run"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`load_run` and `LoadedRun` import torch, so they load on first use: `import hwnas` (and the CLI) stays fast."""
    if name in ("load_run", "LoadedRun"):
        from hwnas.train import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")
