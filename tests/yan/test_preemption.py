"""yan.preemption: SIGTERM / SIGUSR1 set a flag instead of killing the process, and the
previous handlers come back afterwards. The end-to-end behaviour (a real signal to a training
subprocess, then an exact resume) is in test_fault_injection.py; the agreement of ranks in
test_elastic.py (a signal to one rank of two stops both at the same step)."""

from __future__ import annotations

import os
import signal
import threading

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
    """Each item is the pid of the process that loaded it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return os.getpid()


@pytest.mark.parametrize("init", [None, ignore_stop_signals], ids=["default", "ignoring"])
def test_a_data_worker_survives_a_stop_signal_only_when_it_ignores_it(init):
    """A scheduler (and torchrun, through the process group) signals data workers too: by
    default one dies, and its training process fails with it before it can save."""
    loader = DataLoader(WorkerPids(), num_workers=1, worker_init_fn=init, timeout=20)
    batches = iter(loader)
    worker = int(next(batches))
    os.kill(worker, signal.SIGTERM)
    if init is None:
        with pytest.raises(RuntimeError, match="DataLoader worker .* (exited|killed)"):
            list(batches)
    else:
        assert [int(b) for b in batches] == [worker] * 3
