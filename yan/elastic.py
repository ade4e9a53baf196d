"""Resuming a run on another number of processes: an 8-GPU run continues on 4 (or 1).

What a resume must keep is the optimisation, not the process count: the *global* batch
(``--batch-size``, sequences per optimiser step), the step, the optimiser and scheduler states
(the same on every rank under DDP, written once by rank 0) and the global data position. How
the global batch is split (processes x ``--grad-accum`` x per-process micro-batch) may change.

Batch layout on a resume (:func:`batch_layout`):

* ``--batch-size`` must equal the checkpoint's global batch; another one is refused, since
  that would be another run (its learning-rate scale, its data position).
* With the ``--grad-accum`` the run was started with, the checkpoint's per-process micro-batch
  is kept (it is what fitted in a GPU's memory) and the accumulation is recomputed: 8 processes
  x accum 1 x micro 4 = 32 resumes on 4 processes as accum 2 x micro 4. When that does not
  divide, the given ``--grad-accum`` is kept and the micro-batch recomputed.
* A ``--grad-accum`` other than the run's is honoured as asked (micro-batch = global batch /
  (processes x accum)).
* When processes x accumulation does not divide the global batch, the resume is refused with
  the numbers and the process counts that would work.

Per-rank state (:func:`restore_rank_state`):

* Same number of processes: each rank takes back its own RNG states and data position, so the
  run continues bit-identically (as before).
* Another number of processes: the old per-rank noise streams (latent noise, ``t``, ``z0``,
  dropout, expert draws) cannot be handed to a different set of ranks, so every rank reseeds
  Python, numpy, torch (CPU and CUDA) and the loss generator from ``(seed, rank, step)``
  (:func:`resume_seed`). The continuation is reproducible (the same resume gives the same
  run) but its noise differs from an uninterrupted run's; the expected loss does not.
* The data position must be global to move. Both training sources keep one, saved once as the
  checkpoint's ``"data"`` (:func:`yan.data.training.global_position`) and restored on any
  number of processes: a streamed corpus (its blocks dealt to the ranks,
  :mod:`yan.data.stream_position`) and an in-memory corpus, planned in global batches that every
  rank slices the same way (:mod:`yan.data.global_plan`), so that its continuation on another
  number of processes trains on the same global batches as an uninterrupted run. Positions
  saved per rank (``ranks[i]["data"]``: checkpoints of earlier versions, whose in-memory
  corpora were sharded ``rank::world_size`` with one plan per rank) continue on the same
  number of processes; on another, a source may define ``load_resharded_state(states)`` to
  rebuild its position from all the old ranks' states (an earlier one-process position at the
  same global batch is the global plan's), a position that is the same on every rank is taken
  as it is, and any other is refused, naming the process count that would continue it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from yan.distributed import DistEnv
from yan.run_state import set_rng_state

if TYPE_CHECKING:
    from yan.data.training import BatchSource


@dataclass(frozen=True)
class BatchLayout:
    """How a global batch is split: ``world_size x grad_accum x micro = batch_size``."""

    world_size: int
    grad_accum: int
    micro: int

    @property
    def batch_size(self) -> int:
        return self.world_size * self.grad_accum * self.micro

    def describe(self) -> str:
        processes = "process" if self.world_size == 1 else "processes"
        return (
            f"{self.world_size} {processes} x accum {self.grad_accum} x micro-batch {self.micro} "
            f"= {self.batch_size}"
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def saved_layout(run: Mapping[str, Any]) -> BatchLayout | None:
    """The layout a checkpoint was trained with (its ``run`` settings), if it recorded one."""
    world, accum, batch = run.get("world_size"), run.get("grad_accum"), run.get("batch_size")
    if not all(isinstance(v, int) and v >= 1 for v in (world, accum, batch)):
        return None
    assert isinstance(world, int) and isinstance(accum, int) and isinstance(batch, int)
    return BatchLayout(world, accum, batch // (world * accum))


def batch_layout(
    batch_size: int,
    world_size: int,
    grad_accum: int,
    saved_run: Mapping[str, Any] | None = None,
) -> tuple[BatchLayout, str | None]:
    """This run's layout of the global batch, and a note when a resume changed it.

    ``saved_run`` is the resumed checkpoint's ``run`` settings (``None`` for a new run); see the
    module docstring for the rules. Raises ``ValueError`` naming the flags when the global batch
    cannot be kept.
    """
    old = saved_layout(saved_run) if saved_run is not None else None
    if old is None:
        if batch_size % (world_size * grad_accum):
            raise ValueError(
                f"--batch-size {batch_size} (global) must be divisible by processes x "
                f"--grad-accum = {world_size} x {grad_accum}"
            )
        return BatchLayout(world_size, grad_accum, batch_size // (world_size * grad_accum)), None
    assert saved_run is not None
    if batch_size != old.batch_size:
        raise ValueError(
            f"--resume: --batch-size {batch_size} differs from the checkpoint's global batch of "
            f"{old.batch_size} sequences per optimiser step (batch_size in its trainer state: "
            f"{old.describe()}). The global batch "
            "does not depend on the number of processes (each gets --batch-size / (processes x "
            f"--grad-accum) per micro-batch): pass --batch-size {old.batch_size} to continue "
            "this run, or start a new run in another --out; nothing was changed"
        )
    asked_before = saved_run.get("grad_accum_requested", old.grad_accum)
    accum = grad_accum
    if grad_accum == asked_before and batch_size % (world_size * old.micro) == 0:
        accum = batch_size // (world_size * old.micro)  # keep what fitted in memory
    if batch_size % (world_size * accum):
        fits = [d for d in _divisors(batch_size) if batch_size % (d * accum) == 0]
        raise ValueError(
            f"--resume on {world_size} processes: the checkpoint's global batch of {batch_size} "
            f"({old.describe()}) cannot be split as {world_size} processes x --grad-accum "
            f"{accum}, which does not divide {batch_size}. Resume on a number of processes "
            f"that does (with --grad-accum {accum}: {', '.join(map(str, fits))}), or pass a "
            f"--grad-accum such that processes x --grad-accum divides {batch_size}; nothing was "
            "changed"
        )
    layout = BatchLayout(world_size, accum, batch_size // (world_size * accum))
    if layout == old:
        return layout, None
    note = f"--resume: the global batch {batch_size} is kept as {layout.describe()} (the "
    note += f"checkpoint's was {old.describe()})"
    if world_size != old.world_size:
        note += (
            "; on another number of processes every rank's random streams are reseeded from "
            "(seed, rank, step), so the continuation is reproducible but not bit-identical to "
            "an uninterrupted run"
        )
    return layout, note


# ---- per-rank state -------------------------------------------------------------------------
def resume_seed(seed: int, rank: int, step: int) -> int:
    """The seed of ``rank``'s random streams after a resume at ``step`` on another number of
    processes: independent across ranks and steps, the same for the same resume."""
    return int(np.random.SeedSequence([seed, rank, step, 1]).generate_state(1)[0])


def reseed(seed: int, generator: torch.Generator) -> None:
    """Python, numpy, torch (CPU and every CUDA device) and the loss generator from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator.manual_seed(seed)


def global_data_state(states: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The data position shared by every saved rank, or ``None`` when it is per rank."""
    first = states[0]
    return first if all(s == first for s in states[1:]) else None


def restore_data(source: BatchSource, states: Sequence[Mapping[str, Any]], env: DistEnv) -> None:
    """Continue ``source`` from the saved ranks' data positions (see the module docstring)."""
    old = len(states)
    if old == env.world_size:
        try:
            source.load_state_dict(dict(states[env.rank]))
        except (ValueError, KeyError) as err:
            raise ValueError(
                f"--resume: the checkpoint's data position does not fit this run's data ({err}); "
                "a position that counts micro-batches needs the checkpoint's --grad-accum; "
                "nothing was changed"
            ) from None
        return
    hint = (
        f"resume on {old} process{'es' if old > 1 else ''} (torchrun --nproc_per_node x "
        f"--nnodes = {old}), or start a new run"
    )
    reshard = getattr(source, "load_resharded_state", None)
    if callable(reshard):
        try:
            reshard([dict(s) for s in states])
        except (ValueError, KeyError) as err:
            raise ValueError(
                f"--resume on {env.world_size} processes: the checkpoint was written by {old}, "
                f"and {err}: {hint}; nothing was changed"
            ) from None
        return
    shared = global_data_state(states)
    if shared is None:
        raise ValueError(
            f"--resume on {env.world_size} processes: the checkpoint was written by {old}, and "
            "its data position is per process (each rank read its own shard), so it cannot be "
            f"continued on another number of processes: {hint}; nothing was changed"
        )
    try:
        source.load_state_dict(dict(shared))
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"--resume on {env.world_size} processes: the data position saved by {old} "
            f"processes does not fit this run's data ({err}): {hint}; nothing was changed"
        ) from None


def restore_rank_state(
    saved: Mapping[str, Any],
    env: DistEnv,
    generator: torch.Generator,
    source: BatchSource,
    seed: int,
) -> None:
    """This rank's RNG states and data position from a checkpoint's ``ranks`` list: its own when
    the number of processes is the same, else reseeded from ``(seed, rank, step)`` and the
    global data position."""
    ranks = saved["ranks"]
    if "data" in saved:  # one position for the whole run (yan.data.training.global_position)
        source.load_state_dict(saved["data"])
    else:
        restore_data(source, [r["data"] for r in ranks], env)
    if len(ranks) == env.world_size:
        set_rng_state(ranks[env.rank]["rng"], generator, env.device)
    else:
        reseed(resume_seed(seed, env.rank, int(saved["step"])), generator)


__all__ = [
    "BatchLayout",
    "batch_layout",
    "global_data_state",
    "reseed",
    "restore_data",
    "restore_rank_state",
    "resume_seed",
    "saved_layout",
]
