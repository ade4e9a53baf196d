"""The marginal path p_t: snapshots of ``z_t`` from the data's linear path and from a sampler.

Flow matching is exact when the learned ODE carries p_0 to p_1 *through the same p_t* as the
linear path ``z_t = t z1 + (1 - t) z0`` with independent ``(z0, z1)``. These helpers draw both at
the same times, so a notebook can put them side by side and measure where a sampler leaves p_t,
and measure how far a trajectory's *positions* stray from the straight chord (the path shape,
as opposed to :func:`moefm.metrics.straightness`, which measures velocities).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from moefm import sample
from moefm.metrics import wasserstein2


def path_snapshots(
    data: torch.Tensor, z0: torch.Tensor, times: Sequence[float], seed: int = 0
) -> list[torch.Tensor]:
    """``z_t = t z1 + (1 - t) z0`` at every time, ``z1`` drawn from ``data`` independently of ``z0``.

    The same pairs serve every time, so the snapshots are one sample of the path process.
    """
    idx = torch.randint(len(data), (len(z0),), generator=torch.Generator().manual_seed(seed))
    z1 = data[idx]
    return [t * z1 + (1 - t) * z0 for t in times]


def flow_snapshots(
    model: Any,
    z0: torch.Tensor,
    times: Sequence[float],
    steps: int,
    *,
    routing: str = "frozen",
    seed: int = 0,
) -> list[torch.Tensor]:
    """The states of ``steps`` Euler steps of ``model`` (``routing``) from ``z0`` at ``times``.

    Every time must lie on the grid ``i / steps``.
    """
    index = []
    for t in times:
        i = round(t * steps)
        if not math.isclose(i / steps, t, abs_tol=1e-9):
            raise ValueError(f"time {t} is not on the grid i / {steps}; use steps divisible by it")
        index.append(i)
    with torch.inference_mode():
        out = sample(
            model,
            z0,
            steps,
            routing=routing,
            generator=torch.Generator().manual_seed(seed),
            return_trajectory=True,
        )
    return [out.trajectory[i] for i in index]


def distance_to_path(
    snapshots: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]
) -> list[float]:
    """Exact W2 between a sampler's ``z_t`` and the path's ``z_t``, time by time."""
    if len(snapshots) != len(reference):
        raise ValueError(f"{len(snapshots)} snapshots but {len(reference)} reference times")
    return [wasserstein2(a, b) for a, b in zip(snapshots, reference)]


def chord_deviation(trajectory: torch.Tensor) -> float:
    """Mean squared distance of a path from its straight, constant-speed chord.

    ``D = mean over the T + 1 grid times t_i = i / T and the paths of
    ||z_{t_i} - ((1 - t_i) z_0 + t_i z_1)||^2`` for a trajectory ``(T + 1, B, m)``. It is 0 only
    for straight lines run at constant speed, like the velocity-based straightness S, but it
    looks at positions: a path that jitters by ``dt * noise`` per step has a large S (the
    velocity noise) and a D that vanishes as the steps shrink.
    """
    if trajectory.dim() < 3 or trajectory.shape[0] < 2:
        raise ValueError(f"trajectory must have shape (T + 1, B, m), got {tuple(trajectory.shape)}")
    T = trajectory.shape[0] - 1
    start, end = trajectory[0], trajectory[-1]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(T + 1):
        chord = start + (i / T) * (end - start)
        total += (trajectory[i] - chord).double().pow(2).sum(-1).mean()
    return float(total / (T + 1))
