"""Reference answers to the notebooks' "your turn" exercises.

Try the exercise first: each check (:mod:`labs.checks`) says what is wrong with an attempt.
With ``MOEFM_LAB_SOLUTIONS=1`` in the environment the notebooks use these functions instead of
the exercise cells (that is how the test suite runs them).

Each answer is written from the equations, as a student would, not by calling the library
function it is checked against.
"""

from __future__ import annotations

import math

import torch

from moefm.sampling import sample_experts
from moefm.theory import GaussianMixture

# ---- 01 · flow matching from scratch -----------------------------------------------------------


def linear_path(
    z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2): ``z_t = t z1 + (1 - t) z0`` and ``u* = z1 - z0``; ``t`` has shape ``(B,)``."""
    t = t[:, None]
    return t * z1 + (1 - t) * z0, z1 - z0


def vfm_loss(v: torch.Tensor, u_star: torch.Tensor) -> torch.Tensor:
    """Eq. (2): the squared error summed over coordinates, averaged over the batch."""
    return (v - u_star).pow(2).sum(-1).mean()


def marginal_field(z: torch.Tensor, t: float, data: torch.Tensor) -> torch.Tensor:
    """``E[(z1 - z) / (1 - t) | z_t = z]`` for ``z1`` uniform on the points ``data``.

    Bayes: ``p(z1_i | z_t = z)`` is proportional to ``N(z; t z1_i, (1 - t)^2 I)``.
    """
    d2 = (z[:, None, :] - t * data[None, :, :]).pow(2).sum(-1)  # (n, N)
    w = torch.softmax(-d2 / (2 * (1 - t) ** 2), dim=-1)
    return (w @ data - z) / (1 - t)


# ---- 02 · why one field blurs ----------------------------------------------------------------


def mode_posterior(z_t: torch.Tensor, t: float, gm: GaussianMixture) -> torch.Tensor:
    """``p(j | z_t)``: ``z_t | j ~ N(t mu_j, v_j I)`` with ``v_j = t^2 s_j^2 + (1 - t)^2``."""
    v = t**2 * gm.stds**2 + (1 - t) ** 2  # (J,)
    d2 = (z_t[:, None, :] - t * gm.means[None]).pow(2).sum(-1)  # (n, J)
    m = gm.means.shape[1]
    log_w = gm.weights.log() - 0.5 * d2 / v - 0.5 * m * torch.log(2 * math.pi * v)
    return torch.softmax(log_w, dim=-1)


def vfm_optimum(z_t: torch.Tensor, t: float, gm: GaussianMixture) -> torch.Tensor:
    """Prop. 3.1: ``E[u* | z_t] = sum_j p(j | z_t) (mu_j + (c_j / v_j)(z_t - t mu_j))``."""
    s2 = gm.stds**2
    v = t**2 * s2 + (1 - t) ** 2
    c = t * s2 - (1 - t)
    w = mode_posterior(z_t, t, gm)  # (n, J)
    mean_j = gm.means[None] + (c / v)[None, :, None] * (z_t[:, None] - t * gm.means[None])
    return (w[..., None] * mean_j).sum(1)


# ---- 03 · MoE-FM vs VFM and OT-CFM -----------------------------------------------------------


def moefm_nll(
    u_experts: torch.Tensor, log_pi: torch.Tensor, u_target: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Eq. (5) without the Gaussian normaliser, averaged over the batch, via ``logsumexp``."""
    sq = (u_experts - u_target[:, None, :]).pow(2).sum(-1)  # (B, K)
    return -torch.logsumexp(log_pi - sq / (2 * sigma**2), dim=-1).mean()


def nll_gradient(
    u_experts: torch.Tensor, log_pi: torch.Tensor, u_target: torch.Tensor, sigma: float
) -> torch.Tensor:
    """``d NLL_b / d u_k = gamma_k (u_k - u*) / sigma^2`` per sample, shape ``(B, K, m)``."""
    sq = (u_experts - u_target[:, None, :]).pow(2).sum(-1)
    gamma = torch.softmax(log_pi - sq / (2 * sigma**2), dim=-1)
    return gamma[..., None] * (u_experts - u_target[:, None, :]) / sigma**2


def ot_pair(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Re-order ``z0`` so that ``sum_i ||z0[i] - z1[i]||^2`` is minimal (exact assignment)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(torch.cdist(z0, z1).pow(2).numpy())
    perm = torch.empty(len(cols), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)  # z1[cols[i]] gets z0[rows[i]]
    return z0[perm]


# ---- 04 · responsibilities and sigma ---------------------------------------------------------


def responsibilities(
    u_experts: torch.Tensor, log_pi: torch.Tensor, u_target: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Eq. (12): ``softmax_k(log pi_k - ||u_k - u*||^2 / (2 sigma^2))``, shape ``(B, K)``."""
    sq = (u_experts - u_target[:, None, :]).pow(2).sum(-1)
    return torch.softmax(log_pi - sq / (2 * sigma**2), dim=-1)


def em_step(
    points: torch.Tensor,
    weights: torch.Tensor,
    u: torch.Tensor,
    log_pi: torch.Tensor,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of Thm 3.2's fixed point on weighted points ``(N, m)`` of ``q(u* | z_t, t)``:
    ``pi_k = E[gamma_k]``, ``u_k = E[gamma_k u*] / E[gamma_k]``."""
    sq = (points[:, None, :] - u[None]).pow(2).sum(-1)  # (N, K)
    gamma = torch.softmax(log_pi - sq / (2 * sigma**2), dim=-1)
    mass = weights @ gamma  # (K,)
    u_new = (weights[:, None] * gamma).T @ points / mass[:, None]
    return mass, u_new


# ---- 05 · routing at sampling time -----------------------------------------------------------


def frozen_euler(
    model: object, z0: torch.Tensor, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """Frozen routing: draw ``e ~ Cat(pi(z0, 0))`` once, then ``steps`` Euler steps of ``u_e``."""
    dt = 1.0 / steps
    z, e = z0, None
    for i in range(steps):
        feats = model.features(z, torch.full((len(z),), i * dt))  # type: ignore[attr-defined]
        if e is None:  # the first step's evaluation is also the routing evaluation
            e = sample_experts(model.log_pi(feats), generator)  # type: ignore[attr-defined]
        z = z + dt * model.field(feats, e)  # type: ignore[attr-defined]
    return z


def chord_deviation(trajectory: torch.Tensor) -> torch.Tensor:
    """Mean over the ``T + 1`` grid times and the paths of ``||z_t - ((1 - t) z_0 + t z_1)||^2``."""
    T = trajectory.shape[0] - 1
    t = torch.linspace(0, 1, T + 1, dtype=trajectory.dtype).reshape(
        -1, *[1] * (trajectory.dim() - 1)
    )
    chord = (1 - t) * trajectory[0] + t * trajectory[-1]
    return (trajectory - chord).pow(2).sum(-1).mean()
