"""One plan of global batches for an in-memory corpus, the same on every rank, each rank reading
its own slice: a local corpus whose data position is global, so a run resumes on any number of
processes with the same global batch.

:class:`GlobalBatches` plans each epoch once, over the whole training split, at the *global*
batch size ``B = world_size x grad_accum x micro`` (a :class:`~yan.data.batching.BatchIterator`
at batch size ``B``: the seeded permutation and the length buckets of ``bucket_window`` global
batches are a pure function of the seed and the epoch, so every rank computes the same plan
without communicating). Each global batch is then cut into ``S = world_size x grad_accum``
contiguous parts in *slot* order, slot ``s = accum_index x world_size + rank``:

* a full batch gives every slot ``micro`` rows: micro-step ``a`` of rank ``r`` takes rows
  ``[(a x world_size + r) x micro, ... + micro)``, so at each micro-step the ranks together
  train on one contiguous chunk of the global batch;
* the last, smaller batch of an epoch (``n`` not a multiple of ``B``) is cut into ``S``
  near-equal parts (``numpy.array_split``); when it has fewer rows than slots it is repeated
  cyclically to ``S`` rows, so that no rank gets an empty micro-batch.

Concatenated in slot order, the parts are the global batch, whatever the layout: the sequence
of global batches depends on the seed, the split and ``B`` only. The position is therefore one
``(epoch, global batch)`` pair, the same on every rank at a step boundary; the trainer saves it
once (``"data"`` in the checkpoint, :func:`yan.data.training.global_position`) and a resume on
another number of processes continues the same global sequence (its micro-batches are sliced for
the new layout).

With one process and ``grad_accum = 1`` the plan is exactly the per-process plan of earlier
versions (``B = micro``, one slot: the same examples, order, padding and infilling masks, which
are seeded by ``(seed, epoch, example index)`` with the index in the whole split). With
``grad_accum > 1`` on one process it is not: a global batch used to be ``grad_accum``
consecutive micro-batches of a plan at batch size ``micro`` (its own length buckets and batch
order), while here it is one plan batch of ``B`` rows; the same examples are seen each epoch,
grouped differently. A plan at the micro-batch size could not be continued with another
micro-batch, which a resume on another number of processes may need.

Examples are read by index when a micro-batch is built, so with a memory-mapped
:class:`~yan.data.store.ExampleStore` a rank reads the token ids of its own rows only (the plan
itself reads the offsets, 8 bytes per example).

Checkpoints of earlier versions hold one position per rank of that rank's own shard (examples
``rank::world_size``, each rank with its own plan at the micro-batch size). On the same number of
processes they continue exactly, through that per-rank iterator (:meth:`load_state_dict`); a
one-process, no-accumulation position is the global position itself and moves anywhere; any
other is refused on another number of processes (:meth:`load_resharded_state`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from yan.batch import Seq2SeqBatch
from yan.data.batching import BatchIterator
from yan.distributed import DistEnv, shard

PLAN = "global"  # marks a position of this plan (earlier per-rank positions have no "plan")


def slot_rows(batch: np.ndarray, slots: int, slot: int) -> np.ndarray:
    """Rows of ``slot`` (of ``slots``) in one global batch: contiguous near-equal parts in slot
    order, a short batch first repeated cyclically to ``slots`` rows (see the module docstring)."""
    if len(batch) < slots:
        batch = np.resize(batch, slots)  # no empty micro-batch: a few rows are trained twice
    return np.array_split(batch, slots)[slot]


class GlobalBatches:
    """This rank's micro-batches of one global plan (a :class:`~yan.data.training.BatchSource`).

    Args:
        plan: a :class:`~yan.data.batching.BatchIterator` over the *whole* training split at the
            global batch size (:func:`yan.data.make_loaders` with ``batch_size = B``): its
            ``plan(epoch)`` and batch building (transform, padding) are used; its own position is
            not.
        env: this process (its rank and the number of processes).
        grad_accum: micro-batches per optimiser step; ``plan.batch_size`` must be divisible by
            ``env.world_size x grad_accum``.

    Example:
        >>> plan = make_loaders({"train": split}, task, tok, batch_size=32, seed=0)["train"]
        >>> mine = GlobalBatches(plan, DistEnv(rank=1, world_size=4), grad_accum=2)
        >>> batch = next(iter(mine))    # 4 rows: slot 1 of 8 of the first global batch
    """

    def __init__(self, plan: BatchIterator, env: DistEnv, grad_accum: int) -> None:
        slots = env.world_size * grad_accum
        if grad_accum < 1 or plan.batch_size % slots:
            raise ValueError(
                f"GlobalBatches: the global batch of {plan.batch_size} cannot be split as "
                f"{env.world_size} processes x grad_accum {grad_accum}"
            )
        self.plan, self.env, self.grad_accum = plan, env, grad_accum
        self.micro = plan.batch_size // slots
        self.epoch, self.batch, self.step_micro = 0, 0, 0
        self.legacy: BatchIterator | None = None  # an earlier per-rank position, continued

    @property
    def slots(self) -> int:
        return self.env.world_size * self.grad_accum

    @property
    def examples(self) -> Sequence[Any]:
        return self.plan.examples

    def rows(self, epoch: int, batch: int, accum_index: int) -> np.ndarray:
        """Indices (in the whole split) of this rank's micro-batch ``accum_index`` of global
        batch ``batch`` of ``epoch``."""
        slot = accum_index * self.env.world_size + self.env.rank
        return slot_rows(self.plan.plan(epoch)[batch], self.slots, slot)

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        if self.legacy is not None:
            yield from self.legacy
            return
        while True:
            if self.batch >= len(self.plan.plan(self.epoch)):
                self.epoch, self.batch, self.step_micro = self.epoch + 1, 0, 0
                if not self.plan.infinite:
                    return
                continue
            epoch, idx = self.epoch, self.rows(self.epoch, self.batch, self.step_micro)
            self.step_micro += 1  # advance before yielding: the state names the *next* one
            if self.step_micro == self.grad_accum:
                self.batch, self.step_micro = self.batch + 1, 0
            yield self.plan.make(idx, epoch)

    # ---- resumable position ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The next micro-batch is ``micro`` of global batch ``batch`` of ``epoch`` (``micro`` is
        0 at every step boundary); the same on every rank."""
        if self.legacy is not None:
            return self.legacy.state_dict()
        return {
            "plan": PLAN,
            "epoch": self.epoch,
            "batch": self.batch,
            "micro": self.step_micro,
            "layout": [self.env.world_size, self.grad_accum],
            "seed": self.plan.seed,
            "batch_size": self.plan.batch_size,
            "num_examples": len(self.examples),
        }

    def merge_state_dicts(self, states: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The ranks' positions as one global position, or ``None`` when they are per rank (an
        earlier checkpoint's positions, continued as they were)."""
        first = states[0]
        if first.get("plan") != PLAN or any(s != first for s in states[1:]):
            return None
        return first

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a global position (from any number of processes), or at this rank's
        per-rank position of an earlier checkpoint written by the same number of processes."""
        if state.get("plan") != PLAN:
            self._load_per_rank(state)
            return
        for key in ("seed", "batch_size", "num_examples"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                raise ValueError(
                    f"saved {key}={state.get(key)} but this run has {mine}; the data or the "
                    "loader settings changed since the state was saved"
                )
        epoch, batch, micro = int(state["epoch"]), int(state["batch"]), int(state["micro"])
        if epoch < 0 or not 0 <= batch <= len(self.plan.plan(epoch)) or micro < 0:
            raise ValueError(f"invalid data position epoch={epoch}, batch={batch}, micro={micro}")
        if micro and list(state.get("layout", [])) != [self.env.world_size, self.grad_accum]:
            raise ValueError(
                f"the data position is inside a global batch (micro-batch {micro} of layout "
                f"{state.get('layout')}), which only that layout can continue"
            )
        self.epoch, self.batch, self.step_micro, self.legacy = epoch, batch, micro, None

    def load_resharded_state(self, states: list[dict[str, Any]]) -> None:
        """Positions saved by another number of processes (:func:`yan.elastic.restore_data`):
        global ones move; per-rank ones of an earlier checkpoint move only when they are one
        process's without accumulation (its plan is this one), else ``ValueError``."""
        shared = self.merge_state_dicts(states)
        if shared is not None:
            self.load_state_dict(shared)
            return
        if len(states) == 1 and self._is_global_plan(states[0]):
            self._adopt(states[0])
            return
        raise ValueError(
            "its data position is per process (each rank read its own shard), so it cannot be "
            "continued on another number of processes"
        )

    def _is_global_plan(self, state: dict[str, Any]) -> bool:
        """An earlier one-process position at this global batch: its plan is this one."""
        return state.get("batch_size") == self.plan.batch_size and state.get("num_examples") == len(
            self.examples
        )

    def _adopt(self, state: dict[str, Any]) -> None:
        """An earlier one-process position at this global batch, taken as the global one."""
        self.plan.load_state_dict(state)  # validates the seed and the position
        self.load_state_dict(self.plan.state_dict() | {"plan": PLAN, "micro": 0})

    def _load_per_rank(self, state: dict[str, Any]) -> None:
        """An earlier checkpoint's position of this rank's shard (same number of processes)."""
        if not {"epoch", "batch"} <= state.keys():
            raise ValueError(
                f"the saved data position (keys {sorted(state)}) is not one of an in-memory corpus"
            )
        if self.env.world_size == 1 and self._is_global_plan(state):
            self._adopt(state)
            return
        p = self.plan
        legacy = p.with_examples(shard(p.examples, self.env), self.micro)
        legacy.load_state_dict(state)  # ValueError when it is not this shard's position
        self.legacy = legacy


__all__ = ["PLAN", "GlobalBatches", "slot_rows"]
