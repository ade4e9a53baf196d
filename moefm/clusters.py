"""Path-consistent MoE-FM: one expert per data cluster, fixed along the whole path.

Why paper MoE-FM with frozen routing does not converge as T grows. Eq. (5) assigns a training
pair to an expert through its responsibility gamma_k(z_t, t) (eq. 12), computed afresh at every
t from where z_t happens to be. Expert k is therefore trained on a region of (z, t) space whose
shape changes with t, and no single path stays inside it: the field u_k is not the velocity of
any flow from the noise to a part of the data. Frozen routing integrates u_k alone from z0 to
t = 1, so the more accurately the ODE is solved (large T), the further the path leaves the
region u_k was fitted on, and W2 grows with T (``reports/moefm_bench.json``: half-moons
0.38 at T = 2 -> 0.63 at T = 32).

The remedy makes the expert a function of the *pair* (z0, z1) instead of the point z_t:

- before training, k-means splits the data into K clusters ``c(x)`` (scikit-learn);
- expert ``c(z1)`` alone regresses the velocity of the pair, ``||u_c(z_t, t) - (z1 - z0)||^2``
  (the sigma -> 0 limit of eq. 5 with the assignment known instead of inferred);
- the gate learns the cluster by cross-entropy, ``-log pi_c(z_t, t)``.

At the optimum, ``u_k(z, t) = E[z1 - z0 | z_t = z, c = k]`` is the exact flow-matching field of
cluster k (Prop. 3.1 applied to the k-th part of the data) and ``pi_k(z, t) = p(c = k | z_t =
z)``. Frozen routing then samples exactly: at t = 0 it draws k ~ p(c = k | z0) (the cluster
weights under independent coupling) and integrates the flow that carries the noise onto
cluster k, so its error falls as T grows like any flow's. The mixture-mean routing
``sum_k pi_k u_k`` is the marginal field E[z1 - z0 | z_t] of VFM. Each cluster is closer to a
single mode than the whole data set, so its flow is nearly straight and few Euler steps come
close: the first step from z0 points at the cluster's mean (``E[z1 | c = k] - z0``), so one
step lands within about the cluster's spread of where the exact flow lands. For a mixture of
isotropic Gaussians with one cluster per component the optimum is known in closed form
(:func:`gaussian_cluster_optimum`).

With the minibatch OT coupling of OT-CFM (``coupling = "ot"``) noise and data are paired by
OT before the assignment; the gate at t = 0 then also learns which region of noise space
feeds which cluster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_experts, check_positive_int
from .losses import _masked_mean
from .theory import GaussianMixture


def kmeans_labels(data: torch.Tensor, K: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``data (n, m)`` into ``K`` parts with k-means (scikit-learn, 4 restarts).

    Returns the label of every point ``(n,)`` (long) and the centres ``(K, m)``.

    Raises:
        ValueError: ``K`` is not a positive int or exceeds the number of distinct points.
    """
    from sklearn.cluster import KMeans

    check_positive_int("K", K)
    if data.dim() != 2:
        raise ValueError(f"data must have shape (n, m), got {tuple(data.shape)}")
    distinct = torch.unique(data, dim=0).shape[0]
    if K > distinct:
        raise ValueError(f"K={K} clusters need at least K distinct points, got {distinct}")
    km = KMeans(n_clusters=K, n_init=4, random_state=seed).fit(data.detach().cpu().numpy())
    labels = torch.as_tensor(km.labels_, dtype=torch.long)
    centres = torch.as_tensor(km.cluster_centers_, dtype=data.dtype)
    return labels, centres


def cluster_moefm_loss(
    u_experts: torch.Tensor,
    log_pi: torch.Tensor,
    u_target: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    gate_weight: float = 1.0,
) -> torch.Tensor:
    """Path-consistent MoE-FM loss (see the module docstring).

    ``||u_c - u*||^2 - gate_weight * log pi_c`` with ``c`` the pair's cluster, averaged over
    positions (unmasked ones when ``mask`` is given).

    Args:
        u_experts: expert velocities ``(..., K, m)``.
        log_pi: gate log-probabilities ``(..., K)``.
        u_target: ``z1 - z0``, shape ``(..., m)``.
        labels: the cluster of every pair's ``z1``, long ``(...)`` in ``[0, K)``.
        mask: optional boolean ``(...)``; ``False`` marks padding.
        gate_weight: weight of the gate's cross-entropy.
    """
    check_experts(u_experts, log_pi, u_target)
    K = u_experts.shape[-2]
    if labels.shape != log_pi.shape[:-1] or labels.dtype != torch.long:
        raise ValueError(
            f"labels must be a long tensor of shape {tuple(log_pi.shape[:-1])}, got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < K):
        raise ValueError(f"labels must lie in [0, K={K}), got [{labels.min()}, {labels.max()}]")
    idx = labels[..., None, None].expand(*labels.shape, 1, u_experts.shape[-1])
    chosen = u_experts.gather(-2, idx).squeeze(-2)
    regression = (chosen - u_target).pow(2).sum(-1)
    gate = F.nll_loss(log_pi.reshape(-1, K), labels.reshape(-1), reduction="none")
    return _masked_mean(regression + gate_weight * gate.view(labels.shape), mask)


def gaussian_cluster_optimum(
    mixture: GaussianMixture, z_t: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The optimum of :func:`cluster_moefm_loss` when the clusters are the components of an
    isotropic Gaussian mixture: gate ``pi_k = p(c = k | z_t)`` ``(..., J)`` and experts
    ``u_k = E[z1 - z0 | z_t, c = k]`` ``(..., J, m)`` (float64).

    These are the weights and means of the velocity posterior of Prop. 3.1 per component
    (:meth:`moefm.theory.GaussianMixture.velocity_posterior`): the paper's MoE-FM conditional
    optimum in the limit where the expert of every pair is known.
    """
    pi, u, _ = mixture.velocity_posterior(z_t, t)
    return pi, u


class GaussianClusterField:
    """:func:`gaussian_cluster_optimum` as a :class:`moefm.models.MoEField`, so that
    :func:`moefm.sampling.sample` can integrate the exact path-consistent optimum with any
    routing (features are ``(z, t)``; ``t = 1`` is evaluated just below 1)."""

    def __init__(self, mixture: GaussianMixture) -> None:
        self.mixture = mixture
        self.K = mixture.means.shape[0]

    def features(self, z: torch.Tensor, t: torch.Tensor, cond: object = None) -> tuple:
        tt = float(t.reshape(-1)[0]) if t.numel() else 0.0
        pi, u = gaussian_cluster_optimum(self.mixture, z, min(tt, 1.0 - 1e-6))
        return pi.to(z.dtype), u.to(z.dtype)

    def log_pi(self, feats: tuple) -> torch.Tensor:
        return feats[0].clamp_min(1e-30).log()

    def fields(self, feats: tuple) -> torch.Tensor:
        return feats[1]

    def field(self, feats: tuple, idx: torch.Tensor) -> torch.Tensor:
        u = feats[1]
        return u.gather(-2, idx[..., None, None].expand(*idx.shape, 1, u.shape[-1])).squeeze(-2)


__all__ = [
    "GaussianClusterField",
    "cluster_moefm_loss",
    "gaussian_cluster_optimum",
    "kmeans_labels",
]
