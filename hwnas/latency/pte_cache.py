"""On-disk cache of lowered ExecuTorch programs, for timing only.

Lowering a block to XNNPACK costs about a second of CPU and a whole subnet ten (torch.export's decompositions and the
XNNPACK passes), while timing it costs milliseconds, so a table build is mostly lowering. A program's latency is fixed
by what the key records — the module's structure (`repr`), the input shape, the block-graph revision
(`hwnas.space.GRAPH_REVISION`: how blocks export), how hwnas lowers (`LOWERING_RECIPE`) and the torch and executorch
versions — not by its weight values, so a program lowered once serves every later table build and validation with
the same key. The weights inside a cached program are those of the first model lowered under that key: right for
fp32 XNNPACK latency, wrong for accuracy, which is why `hwnas export --format pte` never reads this cache.

An entry is one file, `<key>-<sha256 prefix of its bytes>.pte`, written atomically; a read checks the digest, so a
truncated or corrupt file counts as a miss (and is removed), never as a program.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

from hwnas.atomic import atomic_write_bytes
from hwnas.space import GRAPH_REVISION

__all__ = ["LOWERING_RECIPE", "cache_key_fields", "cache_key", "read_cached", "write_cached"]

log = logging.getLogger(__name__)

# Bump when `executorch_runner.lower_for_timing` changes what it builds (partitioner, passes, config, folding): old
# entries then miss. 2: BatchNorms folded before export.
LOWERING_RECIPE = 2
_DIGEST_CHARS = 16


def cache_key_fields(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, str]:
    """Everything that determines a lowered program's latency, as the cache key is computed from it."""
    from hwnas.latency.executorch_runner import executorch_version

    return {
        "module": repr(model),
        "input_shape": repr(tuple(int(d) for d in input_shape)),
        "graph_revision": str(GRAPH_REVISION),
        "lowering_recipe": str(LOWERING_RECIPE),
        "torch": torch.__version__,
        "executorch": executorch_version(),
    }


def cache_key(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    text = json.dumps(cache_key_fields(model, input_shape), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]


def read_cached(cache_dir: Path, key: str) -> bytes | None:
    """The program cached under `key`, or None when there is none or its bytes do not match their digest."""
    for path in sorted(Path(cache_dir).glob(f"{key}-*.pte")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if path.stem.rsplit("-", 1)[-1] == _digest(data):
            return data
        log.warning("cached program %s is corrupt (digest mismatch); lowering it again", path)
        path.unlink(missing_ok=True)
    return None


def write_cached(cache_dir: Path, key: str, data: bytes) -> Path:
    """Store `data` under `key` atomically (a reader sees the whole file or none); other entries of `key` go."""
    path = atomic_write_bytes(Path(cache_dir) / f"{key}-{_digest(data)}.pte", data)
    for old in Path(cache_dir).glob(f"{key}-*.pte"):
        if old != path:
            old.unlink(missing_ok=True)
    return path
