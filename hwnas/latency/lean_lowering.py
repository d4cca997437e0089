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
- every change to a GraphModule's graph regenerates its Python source and compiles it (`GraphModule.recompile`, ~200
  times a program), though lowering runs graphs through interpreters, not through that source. Here a module that has
  been compiled once defers the next compile to the first call of its `forward` or read of its `code` (what torch's
  own `_LazyGraphModule` does for the modules it makes): ~15% of a subnet.
- ExecuTorch's interpreter-based passes (`ExportPass`) rewrite what they match and then re-trace the whole graph with
  fake tensors. Most of XNNPACK's 15 passes match nothing in a MobileNetV3 (no upsampling, attention, PReLU, 1-D
  convolution, concatenation, BatchNorm once folded), so they re-trace a graph they did not change: ~25% of a subnet.
  A pass that overrides none of the re-trace's hooks and left its graph as it found it (same nodes, targets,
  arguments and value objects) returns that graph instead; passes that rewrite through the hooks always re-trace.
All touch private torch / ExecuTorch names; where one is missing the lowering runs as shipped. The programs are
byte-identical to `pte_bytes` without these shortcuts (tests/test_executorch.py checks it on blocks of every kind and
whole subnets), so the cache key does not record them.
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
def _deferred_recompile() -> Iterator[None]:
    from torch.fx.graph import _PyTreeCodeGen
    from torch.fx.graph_module import GraphModule

    compile_now = GraphModule.recompile
    code = GraphModule.code

    def compile_then_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        compile_now(self)  # installs the compiled forward and __call__ on the module's own class
        return self(*args, **kwargs)

    def recompile(self: Any) -> Any:
        if "_code" not in self.__dict__:  # never compiled (a new module): compile, so every attribute exists
            return compile_now(self)
        if isinstance(self._graph._codegen, _PyTreeCodeGen):  # what compiling sets besides the source
            self._in_spec = self._graph._codegen.pytree_info.in_spec
            self._out_spec = self._graph._codegen.pytree_info.out_spec
        type(self).forward = compile_then_forward  # each GraphModule has a class of its own
        return None

    def current_code(self: Any) -> str:
        if type(self).forward is compile_then_forward:
            compile_now(self)
        return str(code.fget(self))  # type: ignore[attr-defined]

    GraphModule.recompile = recompile  # type: ignore[method-assign]
    GraphModule.code = property(current_code)  # type: ignore[assignment, method-assign]
    try:
        yield
    finally:
        GraphModule.recompile = compile_now  # type: ignore[method-assign]
        GraphModule.code = code  # type: ignore[method-assign]


def _graph_state(graph_module: Any) -> tuple[tuple[Any, ...], list[Any]]:
    """What a re-trace reads from a graph: every node's name, kind, target, arguments and value object (`meta["val"]`,
    by identity: a pass that set a new value, of whatever shape, stride or dtype, changed the graph). The values are
    returned too, so that they stay alive and their ids cannot be reused while the pass runs."""
    nodes = list(graph_module.graph.nodes)
    values = [n.meta.get("val") for n in nodes]
    state = tuple((n.name, n.op, str(n.target), repr(n.args), repr(n.kwargs), id(v)) for n, v in zip(nodes, values))
    return state, values


@contextlib.contextmanager
def _no_retrace_of_unchanged_graphs() -> Iterator[None]:
    try:
        from executorch.exir.pass_base import ExportPass, _ExportPassBase
        from torch.fx.passes.infra.pass_base import PassBase, PassResult
    except ImportError:
        yield
        return
    hooks = {
        name
        for base in (_ExportPassBase, ExportPass)
        for name, member in vars(base).items()
        if callable(member) and name not in ("call", "__init__")
    }
    run_pass = PassBase.__call__
    retrace = _ExportPassBase.call
    may_skip: dict[type, bool] = {}  # per pass class: it rewrites nothing through the re-trace's hooks

    def skippable(cls: type) -> bool:
        if cls not in may_skip:
            may_skip[cls] = all(getattr(cls, h, None) is getattr(ExportPass, h, None) for h in hooks)
        return may_skip[cls]

    def run_recording_input(self: Any, graph_module: Any) -> Any:
        if isinstance(self, _ExportPassBase) and skippable(type(self)):
            self.__dict__["_lean_input"] = (graph_module, _graph_state(graph_module))
        return run_pass(self, graph_module)

    def call(self: Any, graph_module: Any) -> Any:
        seen = self.__dict__.pop("_lean_input", None)  # only passes that may skip record their input
        if seen is not None and seen[0] is graph_module and seen[1][0] == _graph_state(graph_module)[0]:
            return PassResult(graph_module, False)
        return retrace(self, graph_module)

    PassBase.__call__ = run_recording_input  # type: ignore[method-assign]
    _ExportPassBase.call = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        PassBase.__call__ = run_pass  # type: ignore[method-assign]
        _ExportPassBase.call = retrace  # type: ignore[method-assign]


@contextlib.contextmanager
def lean_lowering() -> Iterator[None]:
    """Within the block, lowering skips the repeated work above (single-threaded use: it patches module globals)."""
    with _frozen_cia_ops(), _shared_provenance(), _deferred_recompile(), _no_retrace_of_unchanged_graphs():
        yield
