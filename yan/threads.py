"""CPU threads for training that degrade gracefully when other processes are busy.

torch uses one thread per core by default, and every parallel region waits for its slowest
thread: with one core taken by another process, the thread that shares it stalls all the
others. Measured on a 2-core machine (``small`` preset, stage 1, batch 16, steps per second):

| threads | alone | next to one busy single-threaded process |
|---|---|---|
| 2 (torch's default) | 2.09 | 0.75 |
| 2, ``OMP_WAIT_POLICY=PASSIVE`` | 1.61 | 0.95 |
| 1 | 1.29 | 1.06 |

So ``yan train`` and ``yan demo`` take, by default, one thread per core that is idle when the
run starts (:func:`pick_threads`): all of them on an idle machine, fewer next to a busy
process. A load that starts later is not followed; ``--threads N`` sets the count, and an
``OMP_NUM_THREADS`` in the environment (``torchrun`` sets it) is left to torch. A resumed
``yan train`` takes the count of its checkpoint instead, to continue bit-identically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

CpuTimes = tuple[int, int]  # (idle, total) jiffies summed over all CPUs


def _proc_stat() -> CpuTimes | None:
    """Idle and total CPU time from ``/proc/stat`` (Linux); ``None`` elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])  # guest time is already counted in user time


def busy_cores(
    interval: float = 0.25, read: Callable[[], CpuTimes | None] = _proc_stat
) -> float | None:
    """How many cores other processes keep busy, averaged over ``interval`` seconds;
    ``None`` where the CPU times cannot be read."""
    first = read()
    time.sleep(interval)
    second = read()
    if first is None or second is None or second[1] <= first[1]:
        return None
    busy = 1.0 - (second[0] - first[0]) / (second[1] - first[1])
    return max(0.0, busy) * (os.cpu_count() or 1)


def pick_threads(
    requested: int | None = None, busy: Callable[[], float | None] = busy_cores
) -> int | None:
    """The torch thread count to use: ``requested`` when given (>= 1), else ``None`` when
    ``OMP_NUM_THREADS`` is set (torch already follows it), else the cores not busy now
    (at least 1; torch's default when the load cannot be read)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = os.cpu_count() or 1
    taken = busy()
    if taken is None:
        return torch.get_num_threads()
    return max(1, min(cores, cores - round(taken)))


def apply_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads by :func:`pick_threads`; returns the count in use."""
    n = pick_threads(requested)
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


__all__ = ["apply_threads", "busy_cores", "pick_threads"]
