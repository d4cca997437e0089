"""Work that torch.export and ExecuTorch redo for every program although it cannot change the result, skipped while
lowering programs for timing (`executorch_runner.lower_for_timing`).

Measured on mbv3-tiny (torch 2.14, executorch 1.5), a block costs ~1.4 s of CPU to lower and a whole subnet ~10 s, of
which these take, per program:
- `run_decompositions` walks the whole dispatcher registry for the set of preservable CompositeImplicitAutograd
  operators on every call, ~5 calls per program (~17% of a block). The set only changes when an operator is
  registered, which lowering never does: it is computed once per program here.
- every pass that rewrites a node records provenance (`node.meta["from_node"]`, a chain of `NodeSource`) and deep-copies
  the chain of the node it came from; the chains grow with every pass, so on a subnet the copies cost ~15%. The
  records are never mutated once made, so sharing them (a shallow copy of the list) gives equal provenance.
Both touch private torch names; where one is missing the lowering runs as torch ships it. The programs are
byte-identical to `pte_bytes` without these shortcuts (tests/test_executorch.py checks it), so the cache key
does not record them.
"""

from __future__ import annotations

import contextlib
import copy
import types
from collections.abc import Iterator
from typing import Any

__all__ = ["lean_lowering"]


@contextlib.contextmanager
def _frozen_cia_ops() -> Iterator[None]:
    import torch._export.utils as export_utils
    import torch.export.decomp_utils as decomp_utils
    import torch.export.exported_program as exported_program

    name = "_collect_all_valid_cia_ops"
    originals = {m: getattr(m, name) for m in (export_utils, decomp_utils, exported_program) if hasattr(m, name)}
    if export_utils not in originals:
        yield
        return
    frozen = frozenset(originals[export_utils]())

    def collect() -> set[Any]:
        return set(frozen)  # callers mutate the set they get

    for module in originals:
        setattr(module, name, collect)
    try:
        yield
    finally:
        for module, original in originals.items():
            setattr(module, name, original)


def _share_list(value: Any, memo: Any = None) -> Any:
    return list(value) if isinstance(value, list) else copy.deepcopy(value, memo)


@contextlib.contextmanager
def _shared_provenance() -> Iterator[None]:
    import torch.fx.traceback as fx_traceback

    original = getattr(fx_traceback, "copy", None)
    if original is not copy:  # torch no longer deep-copies through the module's `copy`: nothing to share
        yield
        return
    fx_traceback.copy = types.SimpleNamespace(copy=copy.copy, deepcopy=_share_list)  # type: ignore[assignment]
    try:
        yield
    finally:
        fx_traceback.copy = original  # type: ignore[assignment]


@contextlib.contextmanager
def lean_lowering() -> Iterator[None]:
    """Within the block, lowering skips the repeated work above (single-threaded use: it patches module globals)."""
    with _frozen_cia_ops(), _shared_provenance():
        yield
