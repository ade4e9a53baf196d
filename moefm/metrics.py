"""Trajectory straightness and sample quality against data.

Every metric refuses samples that hold NaN or inf with :class:`~moefm._checks.NonFiniteError`
(a ``ValueError`` and a ``FloatingPointError``): a diverged sample has no distance to the
data, and optimal-transport solvers given NaN costs return 0, a perfect score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._checks import NonFiniteError, check_number, check_positive_int
from .losses import mmd2
from .models import MoEField
from .sampling import sample


@dataclass
class Straightness:
    """``S = int_0^1 E||(Z1 - Z0) - v(Z_t, t)||^2 dt`` on the model's own ODE (Rectified Flow).

    ``total`` averages over all samples; ``per_expert`` maps an expert index to S over the
    trajectories that expert drove (frozen routing only).
    """

    total: float
    per_expert: dict[int, float] = field(default_factory=dict)


@torch.no_grad()
def straightness(
    model: MoEField,
    z0: torch.Tensor,
    *,
    steps: int = 100,
    routing: str = "frozen",
    cond: Any = None,
    generator: torch.Generator | None = None,
) -> Straightness:
    """Straightness of the learned flow, integrated with ``steps`` fine Euler steps.

    With Euler the velocity used on step i is exactly ``(z_{i+1} - z_i) * steps``, so the
    integral is the mean over steps of ``||(z_T - z_0) - v_i||^2``. Zero iff every trajectory is
    a straight line traversed at constant speed.
    """
    steps = check_positive_int("steps", steps)
    out = sample(
        model, z0, steps, routing=routing, cond=cond, generator=generator, return_trajectory=True
    )
    traj = out.trajectory
    if not torch.isfinite(traj).all():
        raise NonFiniteError("the flow diverged: its trajectory holds NaN or inf values")
    v = (traj[1:] - traj[:-1]) * steps  # (T, B, ..., m)
    dev = ((traj[-1] - traj[0]).unsqueeze(0) - v).pow(2).sum(-1).mean(0)  # (B, ...)
    per_expert: dict[int, float] = {}
    if routing in ("frozen", "argmax") and out.experts is not None:
        for k in out.experts.unique().tolist():
            per_expert[int(k)] = float(dev[out.experts == k].mean())
    return Straightness(float(dev.mean()), per_expert)


def _np(x: torch.Tensor | np.ndarray, name: str = "x") -> np.ndarray:
    """Points ``(n, d)`` as float64, refusing empty and non-finite sets."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected points of shape (n, d), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no points (shape {x.shape})")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(1).sum())
        raise NonFiniteError(f"{name}: {bad} of {len(x)} points hold NaN or inf values")
    return x


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact W2 between the empirical measures of ``x`` and ``y`` (uniform weights), via POT's
    network simplex; use up to a few thousand points. NaN/inf points raise ``NonFiniteError``
    (POT would return 0 for them)."""
    import ot

    a, b = _np(x, "x"), _np(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {a.shape} and {b.shape}")
    cost = ot.dist(a, b, metric="sqeuclidean")
    val = ot.emd2(
        np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10_000_000
    )
    return float(np.sqrt(max(val, 0.0)))


def sliced_wasserstein2(
    x: torch.Tensor, y: torch.Tensor, projections: int = 256, seed: int = 0
) -> float:
    """Sliced W2 (random 1D projections, exact 1D transport); cheap for many points."""
    import ot

    a, b = _np(x, "x"), _np(y, "y")
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=projections, seed=seed))


def mmd(
    x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
) -> float:
    """Unbiased squared MMD (App. A.4) with RBF bandwidths suited to 2D toy data."""
    return float(mmd2(torch.as_tensor(_np(x, "x")), torch.as_tensor(_np(y, "y")), bandwidths))


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` (V-statistic)."""
    a, b = torch.as_tensor(_np(x, "x")), torch.as_tensor(_np(y, "y"))
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


@dataclass
class ModeStats:
    """``coverage``: share of modes holding at least ``min_share`` of their expected samples;
    ``off_mode``: share of samples farther than ``radius`` from every mode."""

    coverage: float
    off_mode: float
    counts: list[int]


def mode_coverage(
    samples: torch.Tensor, modes: torch.Tensor, radius: float, min_share: float = 0.1
) -> ModeStats:
    """Mode coverage and off-mode mass for data with known mode centres (e.g. the grid)."""
    radius = check_number("radius", radius, positive=True)
    min_share = check_number("min_share", min_share, minimum=0.0)
    s, m = torch.as_tensor(_np(samples, "samples")), torch.as_tensor(_np(modes, "modes"))
    d = torch.cdist(s, m)
    near, idx = d.min(1)
    inside = near <= radius
    counts = torch.bincount(idx[inside], minlength=len(m))
    expected = len(s) / len(m)
    coverage = float((counts >= min_share * expected).float().mean())
    return ModeStats(coverage, float((~inside).float().mean()), counts.tolist())
