"""yan.preemption: SIGTERM / SIGUSR1 set a flag instead of killing the process, and the
previous handlers come back afterwards. The end-to-end behaviour (a real signal to a training
subprocess, then an exact resume) is in test_fault_injection.py; the agreement of ranks in
test_elastic.py (a signal to one rank of two stops both at the same step)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset

from yan.distributed import DistEnv
from yan.preemption import PREEMPTED_EXIT_CODE, SIGNALS, PreemptionGuard, ignore_stop_signals


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_sets_the_flag_and_the_old_handler_comes_back(sig):
    seen: list[int] = []
    previous = signal.signal(sig, lambda signum, frame: seen.append(signum))
    try:
        with PreemptionGuard(DistEnv()) as guard:
            assert not guard.requested()
            os.kill(os.getpid(), sig)  # delivered before os.kill returns (to this thread)
            assert guard.requested() and guard.signal_name == signal.Signals(sig).name
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal keeps the first name
            assert guard.signal_name == signal.Signals(sig).name
        assert seen == []  # the guard took them
        os.kill(os.getpid(), sig)
        assert seen == [sig]  # and gave the handler back
    finally:
        signal.signal(sig, previous)


def test_outside_the_main_thread_the_guard_does_nothing():
    results: list[bool] = []

    def body() -> None:
        with PreemptionGuard(DistEnv()) as guard:
            results.append(guard.requested())

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert results == [False] and signal.getsignal(signal.SIGTERM) is before


def test_the_exit_code_is_ex_tempfail():
    # sysexits.h EX_TEMPFAIL: documented in scripts/README.md for job scripts that requeue
    assert PREEMPTED_EXIT_CODE == 75 == getattr(os, "EX_TEMPFAIL", 75)


class WorkerPids(Dataset):
    """Each item is the pid of the process that loaded it. Loading item 1 first leaves a mark
    in ``ready`` and then waits a moment, so that a signal sent once the mark is there reaches
    the worker inside ``__getitem__``, where it holds none of the DataLoader's shared locks.
    (A worker killed while it holds one, e.g. the done event's lock it takes after every index
    it receives, leaves the main process waiting for that lock forever.)"""

    def __init__(self, ready: Path) -> None:
        self.ready = ready

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        if i == 1:
            self.ready.touch()
            time.sleep(1.0)
        return os.getpid()


@pytest.mark.parametrize("init", [None, ignore_stop_signals], ids=["default", "ignoring"])
def test_a_data_worker_survives_a_stop_signal_only_when_it_ignores_it(init, tmp_path):
    """A scheduler (and torchrun, through the process group) signals data workers too: by
    default one dies, and its training process fails with it before it can save."""
    ready = tmp_path / "loading-item-1"
    # the timeout is how long the default case waits before it finds its worker dead
    loader = DataLoader(WorkerPids(ready), num_workers=1, worker_init_fn=init, timeout=5)
    batches = iter(loader)
    worker = int(next(batches))
    deadline = time.monotonic() + 20
    while not ready.exists():  # the worker is inside __getitem__(1): no shared lock is held
        assert time.monotonic() < deadline, "the data worker never started loading item 1"
        time.sleep(0.01)
    os.kill(worker, signal.SIGTERM)
    if init is None:
        with pytest.raises(RuntimeError, match="DataLoader worker .* (exited|killed)"):
            list(batches)
    else:
        assert [int(b) for b in batches] == [worker] * 3
