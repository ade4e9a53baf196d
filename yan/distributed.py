"""Distributed data parallel (DDP) helpers: one code path for a single process and for torchrun.

Under ``torchrun`` the environment names the process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``...); :func:`init_distributed` then joins the process group with ``nccl`` on
GPUs or ``gloo`` on CPU. Without those variables it returns a one-process :class:`DistEnv` and
every helper below degrades to a no-op, so the trainer never branches on "am I distributed".

Example:
    >>> env = init_distributed("auto")
    >>> examples = shard(examples, env)            # a different slice on every rank
    >>> total = all_reduce_sum(torch.tensor([n]), env)
    >>> shutdown(env)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DistEnv:
    """Who this process is.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: the device this process trains on.
        backend: ``"nccl"``/``"gloo"`` when a process group is up, else ``None``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but CUDA is not available")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the torchrun process group if there is one; otherwise a single-process env.

    The backend follows the device: ``nccl`` for CUDA, ``gloo`` for CPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    under_launcher = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    dev = pick_device(device, local_rank)
    if not under_launcher:
        return DistEnv(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistEnv(rank, world_size, local_rank, dev, dist.get_backend())


def shutdown(env: DistEnv) -> None:
    """Leave the process group (idempotent)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_sum(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum ``x`` over ranks, in place, and return it."""
    if env.distributed:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every rank, in rank order (JSON-like objects; pickled only on the wire)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _raise_remote(failure: tuple[str, str]) -> None:
    kinds: dict[str, type[Exception]] = {
        "ValueError": ValueError,
        "FileNotFoundError": FileNotFoundError,
        "ImportError": ImportError,
    }
    raise kinds.get(failure[0], RuntimeError)(failure[1])


def main_only(fn: Callable[[], T], env: DistEnv) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank.

    If rank 0 fails, every rank raises the same error instead of waiting forever for it: the
    error type and message travel with the broadcast (``ValueError``, ``FileNotFoundError`` and
    ``ImportError`` keep their type; anything else becomes a ``RuntimeError``).
    """
    if not env.distributed:
        return fn()
    payload: tuple[str, Any]
    error: Exception | None = None
    if env.is_main:
        try:
            payload = ("ok", fn())
        except Exception as err:
            error = err
            payload = ("error", (type(err).__name__, str(err)))
    else:
        payload = ("ok", None)
    payload = broadcast_object(payload, env)
    if payload[0] == "error":
        if error is not None:
            raise error
        _raise_remote(payload[1])
    return payload[1]


def main_first(fn: Callable[[], T], env: DistEnv) -> T:
    """Run ``fn`` on rank 0, then on the other ranks (which then hit caches rank 0 filled).

    Each rank keeps its own result (nothing large goes over the wire); a failure on rank 0 is
    raised on every rank, as in :func:`main_only`.
    """
    if not env.distributed:
        return fn()
    box: list[T] = []
    main_only(lambda: box.append(fn()), env)  # rank 0 only; raises everywhere on failure
    return box[0] if env.is_main else fn()


def shard(items: Sequence[T], env: DistEnv) -> Sequence[T]:
    """Rank ``r`` of ``n`` keeps items ``r, r + n, r + 2n, ...``: disjoint, near-equal slices.

    The slice is ``items[r::n]``: a list for a list, and a view for a memory-mapped
    :class:`~yan.data.store.ExampleStore`, so that the rank reads its own examples only. (The
    trainer slices global batches instead, :mod:`yan.data.global_plan`; this is the split that
    checkpoints of earlier versions were trained on.)"""
    out = items[env.rank :: env.world_size]
    if not len(out):
        raise ValueError(
            f"rank {env.rank} of {env.world_size} got no data: {len(items)} items are fewer "
            "than the number of processes"
        )
    return out


__all__ = [
    "DEVICES",
    "DistEnv",
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "main_first",
    "main_only",
    "pick_device",
    "shard",
    "shutdown",
]
