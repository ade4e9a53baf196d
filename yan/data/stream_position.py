"""Where a rank-sharded document stream stands, as a position that does not depend on the number
of ranks (so that a run saved on 8 processes can resume on 4).

The global document stream (the mixed, split-filtered corpus, the same on every rank) is cut into
*blocks* of consecutive documents, numbered from 0 across epochs. A :class:`BlockPlan` deals the
blocks from ``base`` on, except those in ``done``, to the ranks in turn: the ``k``-th such block
goes to rank ``k % world_size`` as that rank's block ``k // world_size``. Each rank reads (and
tokenises) only its own blocks and counts how many it has consumed (``taken``).

Ranks consume blocks at slightly different rates (documents differ in length), so the blocks
consumed by all ranks together are a prefix ``[0, P)`` plus a few blocks beyond it.
:func:`merge_positions` turns the ranks' local positions into one global position: the plan, each
rank's count and its pieces read but not yet batched, the prefix ``P`` and the blocks consumed
past it, and a place to start reading at or before ``P``. :func:`position_for_rank` turns it
back into one rank's position: with the same number of ranks the plan and every rank's count are
kept, so the run continues exactly as an uninterrupted one; with another number the plan is
dealt anew from ``P`` (skipping the blocks consumed past it) and the pending pieces are dealt
round-robin, so that every document is still read exactly once.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

POSITION_FORMAT = 2  # 1 was the pre-sharding {"stream": ..., "groups": ...} of every rank


@dataclass(frozen=True)
class BlockPlan:
    """Blocks ``>= base`` not in ``done`` dealt round-robin to ``world_size`` ranks."""

    base: int = 0
    done: tuple[int, ...] = ()
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"BlockPlan: world_size must be >= 1, got {self.world_size}")
        if any(b < self.base for b in self.done) or list(self.done) != sorted(set(self.done)):
            raise ValueError(f"BlockPlan: done must be sorted blocks >= base, got {self.done}")

    def owner(self, block: int) -> tuple[int, int] | None:
        """``(rank, index among that rank's blocks)`` of ``block``; ``None`` for a block that
        is no one's (before ``base`` or already in ``done``)."""
        if block < self.base:
            return None
        i = bisect.bisect_left(self.done, block)
        if i < len(self.done) and self.done[i] == block:
            return None
        k = block - self.base - i
        return k % self.world_size, k // self.world_size

    def block_of(self, rank: int, index: int) -> int:
        """The global block that is block ``index`` of ``rank`` (inverse of :meth:`owner`)."""
        block = self.base + index * self.world_size + rank
        for d in self.done:  # sorted: each skipped block before it pushes it one further
            if d <= block:
                block += 1
        return block


@dataclass
class LocalPosition:
    """One rank's position: its plan, the blocks it has consumed, its pieces not yet batched,
    and where reading may start (``starts``: block -> ``(epoch, dataset state)`` at the start
    of that block, for the blocks it has passed recently)."""

    plan: BlockPlan
    rank: int = 0
    taken: int = 0
    pending: list[list[int]] = field(default_factory=list)
    start: tuple[int, int, Any] = (0, 0, None)  # (block, epoch, dataset state) read from
    batches: int = 0  # batches this rank has yielded (seeds its infilling masks)

    def to_dict(self, starts: Sequence[tuple[int, int, Any]]) -> dict[str, Any]:
        return {
            "format": POSITION_FORMAT,
            "base": self.plan.base,
            "done": list(self.plan.done),
            "world_size": self.plan.world_size,
            "rank": self.rank,
            "taken": self.taken,
            "pending": [list(p) for p in self.pending],
            "batches": self.batches,
            "starts": [list(self.start), *(list(s) for s in starts)],
        }


def _consumed(plan: BlockPlan, taken: Sequence[int]) -> list[int]:
    """Blocks ``>= base`` consumed: ``done`` and each rank's first ``taken[r]`` blocks."""
    out = set(plan.done)
    for rank, n in enumerate(taken):
        out.update(plan.block_of(rank, i) for i in range(n))
    return sorted(out)


def merge_positions(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The global position of all ranks from their local ``state_dict()``s, in rank order."""
    if not states:
        raise ValueError("merge_positions: no rank positions")
    first = states[0]
    if any(s.get("format") != POSITION_FORMAT for s in states):
        raise ValueError(
            "this data position was saved by an older version of yan (before rank-sharded "
            "streams) and cannot be restored; start the stage again with --overwrite"
        )
    plan = BlockPlan(int(first["base"]), tuple(first["done"]), int(first["world_size"]))
    if len(states) != plan.world_size or [s["rank"] for s in states] != list(range(len(states))):
        raise ValueError(
            f"merge_positions: expected the positions of ranks 0..{plan.world_size - 1} in "
            f"order, got ranks {[s['rank'] for s in states]}"
        )
    taken = [int(s["taken"]) for s in states]
    consumed = _consumed(plan, taken)
    prefix = plan.base
    for block in consumed:  # sorted: the prefix grows while the blocks are contiguous
        if block != prefix:
            break
        prefix += 1
    # the latest place to start reading that is not past the prefix (every rank knows its own
    # start, so one always exists); the reader skips the consumed blocks after it
    starts = [tuple(s) for st in states for s in st["starts"]]
    start = max((s for s in starts if s[0] <= prefix), key=lambda s: s[0])
    return {
        "format": POSITION_FORMAT,
        "base": plan.base,
        "done": list(plan.done),
        "world_size": plan.world_size,
        "taken": taken,
        "pending": [s["pending"] for s in states],
        "batches": [int(s["batches"]) for s in states],
        "prefix": prefix,
        "extra": [b for b in consumed if b > prefix],
        "start": list(start),
    }


def position_for_rank(state: dict[str, Any], rank: int, world_size: int) -> LocalPosition:
    """Rank ``rank`` of ``world_size``'s position in a global position from
    :func:`merge_positions` (or in a single-rank local ``state_dict()``)."""
    if "prefix" not in state:  # one rank's own state: a world of one
        state = merge_positions([state])
    if state.get("format") != POSITION_FORMAT:
        raise ValueError(
            "this data position was saved by an older version of yan (before rank-sharded "
            "streams) and cannot be restored; start the stage again with --overwrite"
        )
    block, epoch, ds_state = state["start"]
    start = (int(block), int(epoch), ds_state)
    if int(state["world_size"]) == world_size:  # the same deal: exactly where it was
        plan = BlockPlan(int(state["base"]), tuple(state["done"]), world_size)
        return LocalPosition(
            plan,
            rank,
            int(state["taken"][rank]),
            [list(p) for p in state["pending"][rank]],
            start,
            int(state["batches"][rank]),
        )
    # another number of ranks: deal the unread blocks and the pending pieces anew
    plan = BlockPlan(int(state["prefix"]), tuple(state["extra"]), world_size)
    pieces = [list(p) for pend in state["pending"] for p in pend]
    batches = max(state["batches"], default=0)
    return LocalPosition(plan, rank, 0, pieces[rank::world_size], start, batches)


__all__ = [
    "POSITION_FORMAT",
    "BlockPlan",
    "LocalPosition",
    "merge_positions",
    "position_for_rank",
]
