"""Stop a training run cleanly when the cluster asks for its GPUs back (preemption).

Schedulers announce the end of a job with a signal: SLURM sends ``SIGTERM`` when it preempts
or cancels a job (then ``SIGKILL`` after its grace time) and, with ``sbatch --signal``,
``SIGUSR1`` ahead of the time limit; ``torchrun`` forwards ``SIGTERM`` (and the signals named
in ``TORCHELASTIC_SIGNALS_TO_HANDLE``) to its workers, then kills them after
``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (30 by default).

On ``SIGTERM`` or ``SIGUSR1`` a run does not die mid-step: :class:`PreemptionGuard`'s handler
only sets a flag. At each step boundary the trainer asks :meth:`PreemptionGuard.requested`; the
flag is reduced over all ranks (a signal that reached one rank stops them all, at the same
step), the trainer writes an atomic checkpoint of that step, skips the final validation, and
``yan train`` exits with :data:`PREEMPTED_EXIT_CODE`. Running the same command with
``--resume`` continues from that checkpoint exactly as if nothing had happened.

The reduction runs on a CPU (gloo) process group, so it never waits for the GPU: under NCCL a
gloo group is created for it once.

Example:
    >>> with PreemptionGuard(env) as guard:
    ...     while step < max_steps:
    ...         train_step()
    ...         if guard.requested():
    ...             break        # then save and exit with PREEMPTED_EXIT_CODE
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

from yan.distributed import DistEnv

# EX_TEMPFAIL of sysexits.h ("temporary failure; the user is invited to retry"): the run saved
# a checkpoint and stopped early; the same command with --resume continues it
PREEMPTED_EXIT_CODE = 75
SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGUSR1") if hasattr(signal, n))


class PreemptionGuard:
    """While active (``with``, or :meth:`start` to :meth:`stop`), ``SIGTERM`` / ``SIGUSR1`` set
    a flag instead of killing the process; the previous handlers come back on exit. Outside the
    main thread (where Python cannot install signal handlers) the guard does nothing and never
    reports a request.

    :func:`yan.train.train` keeps it active from the start of a run to the release of its lock,
    so a signal during the data preparation stops the run after its first step, and one during
    the last save or the shutdown does not cut them short."""

    def __init__(self, env: DistEnv) -> None:
        self.env = env
        self.signal_name: str | None = None  # the first signal received, e.g. "SIGTERM"
        self._previous: dict[int, Any] = {}
        self._group: Any = None
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> PreemptionGuard:
        """Install the handlers (idempotent); returns ``self``."""
        if not self._active and threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        self._active = True
        return self

    def stop(self) -> None:
        """Give the previous handlers back (idempotent)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self._active = False

    def __enter__(self) -> PreemptionGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requested(self) -> bool:
        """Whether any rank has received a stop signal (a collective: every rank calls it at
        the same step boundary)."""
        local = self.signal_name is not None
        if not self.env.distributed:
            return local
        if self._group is None and self.env.backend != "gloo":
            self._group = dist.new_group(backend="gloo")  # at the first call, on every rank
        flag = torch.tensor([int(local)], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        if flag.item() and self.signal_name is None:
            self.signal_name = "a signal to another rank"
        return bool(flag.item())


def ignore_stop_signals(*_: object) -> None:
    """Make this process ignore SIGTERM / SIGUSR1: the ``worker_init_fn`` of data-loading
    worker processes. A scheduler signals every process of a job and torchrun signals each
    training process's whole process group; a data worker killed by the signal would fail its
    training process before that one could save. The training process stops its workers."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


__all__ = ["PREEMPTED_EXIT_CODE", "SIGNALS", "PreemptionGuard", "ignore_stop_signals"]
