"""A measured search on several torchrun ranks: which candidates each rank measures, and how the ranks stay in step.

Every rank runs the same seeded strategy on the same scores, so every rank asks its scorer for the same batches of
candidates in the same order. Inside one batch call the candidates nobody has measured yet are split between the ranks
(`shard_indices`); each rank measures its share on its own device and `merge_shares` hands every rank all of them, so
every rank's cache, and therefore every rank's next batch, stays identical. Nothing else is exchanged.

Decisions that only rank 0 can take (its output folder and journal may live on a disk the other nodes do not see) run
on rank 0 and are broadcast (`run_on_main`); steps every rank takes but that might fail on one of them (loading the
checkpoint and data) are agreed on (`agree`): either way a failure is one HwnasError on every rank, so no rank is left
waiting in a collective for a peer that has given up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.distributed import Dist

__all__ = ["agree", "merge_shares", "run_on_main", "shard_indices"]

T = TypeVar("T")


def shard_indices(resolutions: Sequence[int], *, rank: int, world: int) -> list[int]:
    """The positions (in batch order) of the candidates `rank` measures: the batch sorted by resolution and dealt
    round-robin, so every rank gets the same count ±1 and about the same mix of cheap and dear resolutions."""
    order = sorted(range(len(resolutions)), key=lambda i: (resolutions[i], i))
    return sorted(order[rank::world])


def _batch_digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def merge_shares(dist: Dist, keys: Sequence[str], mine: Mapping[str, float]) -> dict[str, float]:
    """Every rank's measurements of the batch `keys` (this rank's are `mine`), on every rank.

    Each rank also sends a digest of the batch it was asked for: ranks whose strategies drifted apart (a fitted
    predictor computed differently on another kind of device, another hwnas version on one node) are stopped with an
    error instead of silently mixing scores of different candidates.
    """
    digest = _batch_digest(keys)
    try:
        shares = dist.gather((digest, dict(mine)))
    except RuntimeError as exc:  # gloo / NCCL report a peer that died (kill -9, out of memory) as a RuntimeError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HwnasError(
            f"another rank stopped while candidates were being measured ({reason}); every measurement merged so far "
            "is in the journal: rerun the same command with --resume"
        ) from None
    if any(other != digest for other, _ in shares):
        raise HwnasError(
            "the ranks asked for different candidates (their searches drifted apart); run every rank with the same "
            "hwnas version, options, --threads and kind of device"
        )
    merged: dict[str, float] = {}
    for _, share in shares:
        merged.update(share)
    assert set(merged) == set(keys), "every candidate of the batch is measured by exactly one rank"
    return merged


def run_on_main(dist: Dist, fn: Callable[[], T]) -> T:
    """`fn()` evaluated on rank 0 alone; its value, or its HwnasError, reaches every rank."""
    if dist.world == 1:
        return fn()
    if dist.main:
        try:
            box: tuple[bool, object] = (True, fn())
        except HwnasError as exc:
            box = (False, str(exc))
        dist.broadcast(box)
    else:
        box = dist.broadcast(None)
    if not box[0]:
        raise HwnasError(str(box[1]))
    return box[1]  # type: ignore[return-value]


def agree(dist: Dist, fn: Callable[[], T]) -> T:
    """`fn()` on every rank; if it raised HwnasError on any rank, every rank raises the lowest such rank's error
    (prefixed with that rank when it is not rank 0, since rank 0 is the one that prints it)."""
    error: str | None = None
    try:
        value = fn()
    except HwnasError as exc:
        if dist.world == 1:
            raise
        error = str(exc)
    if dist.world > 1:
        errors = dist.gather(error)
        failed = [(rank, text) for rank, text in enumerate(errors) if text is not None]
        if failed:
            rank, text = failed[0]
            raise HwnasError(text if rank == 0 else f"rank {rank}: {text}")
    return value
