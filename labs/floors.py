"""How low can each training loss go? Loss floors for Gaussian-mixture data, from the closed forms
of :mod:`moefm.theory`, as functions of t.

- VFM (eq. 2, a squared error): its minimum is ``E ||u* - E[u* | z_t, t]||^2``, the conditional
  variance of the target left over by the best possible field (Prop. 3.1).
- MoE-FM (eq. 5, a negative log-likelihood in nats without the Gaussian normaliser): evaluated at
  the fixed point of Thm 3.2 that :func:`moefm.theory.moefm_optimum` reaches from its default
  start. The objective is not convex, so this is the value of *a* stationary point, an upper bound
  on the true minimum (in practice a tight one for these data).

Both are Monte Carlo averages over ``z_t`` on a grid of times (midpoints, so ``t < 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from moefm import linear_path, moefm_nll, vfm_loss
from moefm.theory import GaussianMixture, moefm_optimum


@dataclass(frozen=True)
class Floor:
    """A loss floor per time ``t`` (``per_t``) and its average over ``t ~ U(0, 1)`` (``mean``)."""

    times: torch.Tensor
    per_t: torch.Tensor

    @property
    def mean(self) -> float:
        return float(self.per_t.mean())


def _times(n_t: int) -> torch.Tensor:
    return (torch.arange(n_t, dtype=torch.float64) + 0.5) / n_t


def _path_points(gm: GaussianMixture, t: float, n: int, g: torch.Generator) -> torch.Tensor:
    z1 = gm.sample(n, g).double()
    z0 = torch.randn(n, gm.dim, generator=g, dtype=torch.float64)
    return t * z1 + (1 - t) * z0


def vfm_floor(gm: GaussianMixture, n_t: int = 40, n_z: int = 400, seed: int = 0) -> Floor:
    """``E tr Var(u* | z_t, t)`` per time: the smallest value eq. (2) can take."""
    g = torch.Generator().manual_seed(seed)
    times = _times(n_t)
    per_t = []
    for t in times.tolist():
        w, mu, var = gm.velocity_posterior(_path_points(gm, t, n_z, g), t)
        second = (w * (gm.dim * var + mu.pow(2).sum(-1))).sum(-1)
        mean = (w.unsqueeze(-1) * mu).sum(-2)
        per_t.append(float((second - mean.pow(2).sum(-1)).mean()))
    return Floor(times, torch.tensor(per_t, dtype=torch.float64))


def moefm_floor(
    gm: GaussianMixture,
    K: int,
    sigma: float,
    n_t: int = 20,
    n_z: int = 20,
    nodes: int = 6,
    seed: int = 0,
) -> Floor:
    """Eq. (5) (no normaliser) at the Thm 3.2 fixed point, per time, for K experts of width sigma."""
    g = torch.Generator().manual_seed(seed)
    times = _times(n_t)
    per_t = []
    for t in times.tolist():
        z_t = _path_points(gm, t, n_z, g)
        opt = moefm_optimum(gm, z_t, t, K=K, sigma=sigma, nodes=nodes, iters=300, tol=1e-6)
        pts, wts = gm.velocity_quadrature(z_t, t, nodes)  # (n, N, m), (n, N)
        d2 = (pts.unsqueeze(-2) - opt.u.unsqueeze(-3)).pow(2).sum(-1)  # (n, N, K)
        log_pi = opt.pi.clamp_min(1e-300).log().unsqueeze(-2)
        nll = -torch.logsumexp(log_pi - d2 / (2 * sigma**2), dim=-1)
        per_t.append(float((wts * nll).sum(-1).mean()))
    return Floor(times, torch.tensor(per_t, dtype=torch.float64))


def normalizer(sigma: float, dim: int = 2) -> float:
    """``(m/2) log(2 pi sigma^2)``: add it to eq. (5) as computed to get the true NLL in nats."""
    return 0.5 * dim * math.log(2 * math.pi * sigma**2)


@torch.no_grad()
def loss_per_t(
    model: Any,
    gm: GaussianMixture,
    times: torch.Tensor,
    *,
    sigma: float = 0.1,
    n: int = 2000,
    seed: int = 0,
) -> torch.Tensor:
    """A trained model's own loss at each time: eq. (2) for one expert, eq. (5) for several."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in times.tolist():
        z1 = gm.sample(n, g)
        z0 = torch.randn(z1.shape, generator=g)
        tt = torch.full((n,), t)
        z_t, u = linear_path(z0, z1, tt)
        pred = model(z_t, tt)
        if pred.u.shape[-2] == 1:
            out.append(float(vfm_loss(pred.u[:, 0], u)))
        else:
            out.append(float(moefm_nll(pred.u, pred.log_pi, u, sigma)))
    return torch.tensor(out, dtype=torch.float64)
