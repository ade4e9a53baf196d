"""Thread count under load (yan.threads): the cores that are idle at the start of a run."""

import pytest
import torch

from yan import threads


def reader(*samples):
    it = iter(samples)
    return lambda: next(it)


def test_busy_cores_is_the_non_idle_share_of_all_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    # 400 jiffies elapsed over 4 cores, 300 of them idle: one core busy
    assert threads.busy_cores(0.0, reader((1000, 2000), (1300, 2400))) == pytest.approx(1.0)
    assert threads.busy_cores(0.0, reader((0, 0), (400, 400))) == 0.0
    assert threads.busy_cores(0.0, reader(None, None)) is None
    assert threads.busy_cores(0.0, reader((5, 10), (5, 10))) is None  # no time elapsed


@pytest.mark.parametrize(("busy", "want"), [(0.0, 2), (0.4, 2), (0.9, 1), (1.0, 1), (2.0, 1)])
def test_idle_cores_are_used_and_at_least_one(monkeypatch, busy, want):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.pick_threads(busy=lambda: busy) == want


def test_an_explicit_count_or_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.pick_threads(busy=lambda: 0.0) is None
    assert threads.pick_threads(2, busy=lambda: 0.0) == 2
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        threads.pick_threads(0)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.pick_threads(busy=lambda: None) == torch.get_num_threads()


def test_apply_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
