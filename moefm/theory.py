"""Closed-form optima for Gaussian-mixture data with N(0, I) noise: the ground truth of the labs.

For data ``z1 ~ sum_j w_j N(mu_j, s_j^2 I)`` and noise ``z0 ~ N(0, I)`` on the linear path
``z_t = t z1 + (1 - t) z0``, the pair ``(z_t, u* = z1 - z0)`` is jointly Gaussian within each
component ``j``:

- ``z_t | j ~ N(t mu_j, v_j I)`` with ``v_j = t^2 s_j^2 + (1 - t)^2``,
- ``Cov(u*, z_t | j) = c_j I`` with ``c_j = t s_j^2 - (1 - t)``, ``Var(u* | j) = (s_j^2 + 1) I``,

so the conditional law of the target velocity ``q(u* | z_t, t)`` is itself a Gaussian mixture
with weights ``p(j | z_t)``, means ``mu_j + (c_j / v_j)(z_t - t mu_j)`` and variances
``s_j^2 + 1 - c_j^2 / v_j``. From it:

- the VFM optimum ``E[z1 - z0 | z_t, t]`` (Prop. 3.1 / A.1) is the posterior-weighted mean;
- the MoE-FM conditional optimum (Thm 3.2 / A.4) is a fixed point of EM on ``q``: fitting K
  isotropic Gaussians of fixed variance sigma^2 to ``q``, computed here on a Gauss-Hermite
  quadrature of ``q`` (exact for low dimensions up to quadrature error);
- sigma -> 0 turns the E-step into nearest-expert (Voronoi) assignment (Prop. A.5, Cor. A.6),
  and sigma -> inf makes responsibilities equal routings, so every expert tends to the VFM
  optimum and the routing is not identified (App. A.3.2).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import check_positive_int, check_sigma


@dataclass
class GaussianMixture:
    """An isotropic Gaussian mixture ``sum_j w_j N(mu_j, s_j^2 I)``.

    Args:
        means: ``(J, m)`` component means.
        stds: ``(J,)`` per-component standard deviations (or a scalar for all).
        weights: ``(J,)`` mixture weights (normalised here); uniform by default.
    """

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    def __init__(
        self,
        means: torch.Tensor,
        stds: torch.Tensor | float,
        weights: torch.Tensor | None = None,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2:
            raise ValueError(f"means must have shape (J, m), got {tuple(means.shape)}")
        J = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64).expand(J).clone()
        weights = (
            torch.ones(J, dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        if weights.shape != (J,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {J} non-negative numbers with a positive sum")
        if (stds <= 0).any():
            raise ValueError("stds must be > 0")
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples as float32, shape ``(n, m)``."""
        j = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[j] + self.stds[j, None] * eps).float()

    def _check_t(self, z_t: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
        if not 0.0 <= t < 1.0:
            raise ValueError(f"t must lie in [0, 1) for the conditional target, got {t}")
        z_t = torch.as_tensor(z_t, dtype=torch.float64)
        if z_t.shape[-1] != self.dim:
            raise ValueError(f"z_t must have last dimension {self.dim}, got {tuple(z_t.shape)}")
        return z_t, float(t)

    def velocity_posterior(
        self, z_t: torch.Tensor, t: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture ``q(u* | z_t, t)``: weights ``(..., J)``, means ``(..., J, m)``, variances ``(J,)``."""
        z_t, t = self._check_t(z_t, t)
        s2 = self.stds**2
        v = t**2 * s2 + (1.0 - t) ** 2
        c = t * s2 - (1.0 - t)
        diff = z_t.unsqueeze(-2) - t * self.means  # (..., J, m)
        log_w = (
            self.weights.log()
            - 0.5 * diff.pow(2).sum(-1) / v
            - 0.5 * self.dim * torch.log(2 * math.pi * v)
        )
        w = torch.softmax(log_w, dim=-1)
        mu = self.means + (c / v)[:, None] * diff
        var = s2 + 1.0 - c**2 / v
        return w, mu, var

    def vfm_optimum(self, z_t: torch.Tensor, t: float) -> torch.Tensor:
        """``E[z1 - z0 | z_t, t]`` (Prop. 3.1), shape ``(..., m)``."""
        w, mu, _ = self.velocity_posterior(z_t, t)
        return (w.unsqueeze(-1) * mu).sum(-2)

    def velocity_quadrature(
        self, z_t: torch.Tensor, t: float, nodes: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted points ``(u_i, w_i)`` representing ``q(u* | z_t, t)``.

        A product Gauss-Hermite rule with ``nodes`` points per axis and component: exact for
        polynomials up to degree ``2 nodes - 1``. Returns ``(..., N, m)`` points, ``(..., N)`` weights.
        """
        nodes = check_positive_int("nodes", nodes)
        if nodes**self.dim > 200_000:
            raise ValueError(f"nodes**dim = {nodes}**{self.dim} is too many quadrature points")
        x1, w1 = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2/2)
        grid = torch.tensor(list(itertools.product(x1, repeat=self.dim)), dtype=torch.float64)
        gw = torch.tensor(
            [math.prod(p) for p in itertools.product(w1, repeat=self.dim)], dtype=torch.float64
        )
        gw = gw / gw.sum()
        w, mu, var = self.velocity_posterior(z_t, t)
        pts = mu.unsqueeze(-2) + var.sqrt()[:, None, None] * grid  # (..., J, N, m)
        wts = w.unsqueeze(-1) * gw  # (..., J, N)
        return pts.flatten(-3, -2), wts.flatten(-2)


@dataclass
class MoEOptimum:
    """MoE-FM conditional optimum at given points: routing ``pi (..., K)``, experts ``u (..., K, m)``."""

    pi: torch.Tensor
    u: torch.Tensor
    iterations: int
    converged: bool


def moefm_optimum(
    gm: GaussianMixture,
    z_t: torch.Tensor,
    t: float,
    K: int,
    sigma: float,
    *,
    init: torch.Tensor | None = None,
    iters: int = 500,
    tol: float = 1e-10,
    nodes: int = 8,
    seed: int = 0,
) -> MoEOptimum:
    """The MoE-FM conditional optimum of Thm 3.2 by its fixed point (EM on ``q(u* | z_t, t)``).

    Iterates ``gamma = responsibilities(u, pi)`` (eq. 12), ``pi_k = E[gamma_k]``,
    ``u_k = E[gamma_k u*] / E[gamma_k]`` until the experts move less than ``tol``. ``sigma = 0``
    runs the hard-assignment limit of Prop. A.5 (Lloyd's iterations: nearest expert, ties to the
    lowest index). Different initialisations can reach different fixed points (the objective is
    not convex); by default experts start at K distinct quadrature points picked farthest-first.

    Args:
        gm: the data distribution.
        z_t: points ``(..., m)``; t: a time in [0, 1).
        K: number of experts; sigma: expert std (0 for the hard limit).
        init: optional initial experts ``(..., K, m)``.
    """
    K = check_positive_int("K", K)
    hard = sigma == 0
    if not hard:
        sigma = check_sigma(sigma)
    pts, wts = gm.velocity_quadrature(z_t, t, nodes)
    u = (
        _farthest_first(pts, wts, K, seed)
        if init is None
        else torch.as_tensor(init, dtype=torch.float64).clone()
    )
    if u.shape != (*pts.shape[:-2], K, pts.shape[-1]):
        raise ValueError(
            f"init must have shape {(*pts.shape[:-2], K, pts.shape[-1])}, got {tuple(u.shape)}"
        )
    log_pi = torch.full(u.shape[:-1], -math.log(K), dtype=torch.float64)
    converged, iterations = False, 0
    for iterations in range(1, iters + 1):  # noqa: B007 (reported after the loop)
        d2 = (pts.unsqueeze(-2) - u.unsqueeze(-3)).pow(2).sum(-1)  # (..., N, K)
        if hard:
            gamma = torch.nn.functional.one_hot(d2.argmin(-1), K).to(torch.float64)
        else:
            gamma = torch.softmax(log_pi.unsqueeze(-2) - d2 / (2 * sigma**2), dim=-1)
        mass = (wts.unsqueeze(-1) * gamma).sum(-2)  # (..., K) = E[gamma_k]
        num = torch.einsum("...n,...nk,...nm->...km", wts, gamma, pts)
        new_u = torch.where(
            mass.unsqueeze(-1) > 1e-300, num / mass.clamp_min(1e-300).unsqueeze(-1), u
        )
        log_pi = mass.clamp_min(1e-300).log()
        delta = (new_u - u).abs().max().item()
        u = new_u
        if delta < tol:
            converged = True
            break
    return MoEOptimum(log_pi.exp(), u, iterations, converged)


def _farthest_first(pts: torch.Tensor, wts: torch.Tensor, K: int, seed: int) -> torch.Tensor:
    """K well-spread starting experts per point: the heaviest node, then farthest-first."""
    del seed  # deterministic: kept in the signature for future random restarts
    first = wts.argmax(-1)
    chosen = [torch.gather(pts, -2, first[..., None, None].expand(*first.shape, 1, pts.shape[-1]))]
    mind = (pts - chosen[0]).pow(2).sum(-1)
    for _ in range(1, K):
        # weight by sqrt(mass) so that negligible-mass outliers are not picked
        idx = (mind * wts.sqrt()).argmax(-1)
        c = torch.gather(pts, -2, idx[..., None, None].expand(*idx.shape, 1, pts.shape[-1]))
        chosen.append(c)
        mind = torch.minimum(mind, (pts - c).pow(2).sum(-1))
    return torch.cat(chosen, dim=-2)
