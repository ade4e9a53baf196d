"""What the explorer's panels show, computed with the moefm API only (no Streamlit here).

Results are plain dataclasses of numpy arrays so the app can cache them by settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moefm import FlowModel, linear_path, responsibilities, sample, toy
from moefm.metrics import energy_distance, mode_coverage, straightness, wasserstein2
from moefm.plot import grid_points

STEP_GRID: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def effective_routing(model: FlowModel, routing: str) -> str:
    """The routing actually used: with K = 1 every mode integrates the one expert field, so all
    four are the same flow and ``frozen`` stands for them (this also lets the adaptive solver
    run a baseline whatever routing is selected)."""
    return "frozen" if model.K == 1 else routing


@dataclass
class Samples:
    """One sampling run: noise ``z0 (n, 2)``, endpoints ``z1``, the states on the grid
    ``trajectory (T + 1, n, 2)``, the experts used (``(n,)`` frozen/argmax, ``(nfe, n)``
    resample, ``None`` mixture mean) and the number of field evaluations."""

    z0: np.ndarray
    z1: np.ndarray
    trajectory: np.ndarray
    experts: np.ndarray | None
    nfe: int

    def frozen_experts(self) -> np.ndarray | None:
        """One expert per trajectory: the frozen one, or the first draw under resampling."""
        if self.experts is None:
            return None
        return self.experts if self.experts.ndim == 1 else self.experts[0]


def _noise(n: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g), g


@torch.inference_mode()
def draw_samples(
    model: FlowModel, steps: int, solver: str, routing: str, seed: int, n: int
) -> Samples:
    """Integrate ``n`` noise points with ``steps`` solver steps (:func:`moefm.sample`)."""
    z0, g = _noise(n, seed)
    out = sample(
        model,
        z0,
        steps,
        solver=solver,
        routing=effective_routing(model, routing),
        generator=g,
        return_trajectory=True,
    )
    experts = None if out.experts is None else out.experts.numpy()
    return Samples(z0.numpy(), out.z1.numpy(), out.trajectory.numpy(), experts, out.nfe)


@dataclass
class Quality:
    """Sample quality against held-out data; coverage/off-mode only for Gaussian mixtures."""

    w2: float
    energy: float
    coverage: float | None = None
    off_mode: float | None = None


def sample_quality(z1: np.ndarray, reference: torch.Tensor, dataset: str) -> Quality:
    """Exact W2 and energy distance to ``reference``; mode coverage within 3 std of a mode."""
    x = torch.as_tensor(z1)
    q = Quality(wasserstein2(x, reference), energy_distance(x, reference))
    mix = toy.mixture(dataset)
    if mix is not None:
        stats = mode_coverage(x, mix.means.float(), radius=3.0 * float(mix.stds.max()))
        q.coverage, q.off_mode = stats.coverage, stats.off_mode
    return q


@dataclass
class StepCurve:
    """W2 to the data and straightness S of the learned flow for each T of ``steps``."""

    steps: list[int]
    w2: list[float]
    straightness: list[float]


@torch.inference_mode()
def quality_vs_steps(
    model: FlowModel,
    reference: torch.Tensor,
    solver: str,
    routing: str,
    seed: int,
    n: int = 500,
    steps: tuple[int, ...] = STEP_GRID,
) -> StepCurve:
    """W2 of ``n`` samples drawn with T steps of ``solver``, and the straightness S of
    :func:`moefm.metrics.straightness` measured on T Euler steps (its definition), per T."""
    routing = effective_routing(model, routing)
    ref = reference[:n]
    w2, s = [], []
    for T in steps:
        if solver == "dopri5" and w2:
            # the adaptive solver picks its own steps; T only sets the reporting grid, so the
            # endpoint (and W2) is the one already computed
            w2.append(w2[0])
        else:
            z0, g = _noise(n, seed)
            out = sample(model, z0, T, solver=solver, routing=routing, generator=g)
            w2.append(wasserstein2(out.z1, ref))
        z0, g = _noise(n, seed)
        s.append(straightness(model, z0, steps=T, routing=routing, generator=g).total)
    return StepCurve(list(steps), w2, s)


@dataclass
class ResponsibilityMap:
    """Responsibilities over a grid of noise points ``z0``: ``gamma (n, n, K)`` on the mesh
    ``xx, yy`` for one data point ``z1`` at time ``t``."""

    gamma: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    z1: tuple[float, float]
    t: float


def _gamma_pi(
    model: FlowModel, z0: torch.Tensor, z1: torch.Tensor, t: float, sigma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gamma, pi, z_t)`` of eq. (12) for the pairs ``(z0, z1)`` on the linear path (eq. 2)."""
    tt = torch.full((len(z0),), float(t))
    z_t, u_target = linear_path(z0, z1.expand_as(z0), tt)
    out = model(z_t, tt)
    return responsibilities(out.u, out.log_pi, u_target, sigma), out.log_pi.exp(), z_t


@torch.inference_mode()
def responsibility_map(
    model: FlowModel,
    z1: tuple[float, float],
    t: float,
    sigma: float,
    lim: float = 4.0,
    n: int = 100,
) -> ResponsibilityMap:
    """Which expert claims the target ``u* = z1 - z0`` from ``z_t = t z1 + (1 - t) z0``, as the
    noise ``z0`` ranges over ``[-lim, lim]^2`` (eq. 12 with the model's own sigma)."""
    pts, xx, yy = grid_points(lim, n)
    gamma, _, _ = _gamma_pi(model, pts, torch.tensor([z1], dtype=torch.float32), t, sigma)
    return ResponsibilityMap(gamma.reshape(n, n, -1).numpy(), xx, yy, z1, float(t))


@dataclass
class ResponsibilityBars:
    """Gate ``pi(z_t, t)`` (prior) and responsibilities ``gamma`` (posterior, eq. 12) of one pair."""

    pi: np.ndarray
    gamma: np.ndarray
    z_t: tuple[float, float]


@torch.inference_mode()
def responsibility_bars(
    model: FlowModel, z0: tuple[float, float], z1: tuple[float, float], t: float, sigma: float
) -> ResponsibilityBars:
    """``pi`` and ``gamma`` for the single pair ``(z0, z1)`` at time ``t``."""
    gamma, pi, z_t = _gamma_pi(
        model,
        torch.tensor([z0], dtype=torch.float32),
        torch.tensor([z1], dtype=torch.float32),
        t,
        sigma,
    )
    return ResponsibilityBars(pi[0].numpy(), gamma[0].numpy(), tuple(z_t[0].tolist()))
