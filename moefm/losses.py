"""Losses of flow matching: VFM (eq. 2), MoE-FM NLL (eq. 5), responsibilities (eq. 12), MMD (A.4),
and the expert floor that keeps every expert a usable flow under frozen routing.

Shapes follow one convention: a leading batch shape ``(...)`` (e.g. ``(B,)`` for 2D points or
``(B, L)`` for tokens), ``m`` the state dimension and ``K`` the number of experts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ._checks import check_experts, check_finite, check_float_tensor, check_sigma

PAPER_BANDWIDTHS = (0.2, 0.5, 1.0, 2.0, 5.0)
# Smallest sigma eq. (5) and eq. (12) accept: ||u - u*||^2 / (2 sigma^2) and its gradient
# (u - u*) / sigma^2 stay far inside float32's range (3e38) for any distance below 1e13, and
# 1e-4 already gives the sigma -> 0 hard assignment (Prop. A.5).
MIN_SIGMA = 1e-6


def _masked_mean(per_position: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_position.mean()
    if tuple(mask.shape) != tuple(per_position.shape):
        raise ValueError(
            f"mask must have the leading shape {tuple(per_position.shape)}, got {tuple(mask.shape)}"
        )
    mask = mask.to(per_position.dtype)
    # clamp: an all-padding batch gives 0, not NaN
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


def vfm_loss(
    v_pred: torch.Tensor, u_target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Vanilla flow matching loss, eq. (2): mean over positions of ``||v - (z1 - z0)||^2``.

    Args:
        v_pred: predicted velocity ``(..., m)``.
        u_target: ``z1 - z0``, same shape.
        mask: optional boolean ``(...)``; ``False`` marks padding, excluded from the mean.

    Raises ``ValueError`` for an empty batch (a mean over nothing is NaN) and
    :class:`~moefm._checks.NonFiniteError` for a NaN/inf target (one reduction per call).
    """
    check_float_tensor("v_pred", v_pred)
    check_float_tensor("u_target", u_target)
    if v_pred.shape != u_target.shape:
        raise ValueError(
            f"v_pred and u_target must have the same shape, got {tuple(v_pred.shape)} "
            f"and {tuple(u_target.shape)}"
        )
    if u_target.numel() == 0:
        raise ValueError(f"empty batch: u_target has shape {tuple(u_target.shape)}")
    check_finite("u_target", u_target)
    return _masked_mean((v_pred - u_target).pow(2).sum(-1), mask)


def _log_joint(
    u_experts: torch.Tensor, log_pi: torch.Tensor, u_target: torch.Tensor, sigma: float
) -> torch.Tensor:
    """``log pi_k - ||u_k - u*||^2 / (2 sigma^2)``, shape ``(..., K)``."""
    for name, x in (("u_experts", u_experts), ("log_pi", log_pi), ("u_target", u_target)):
        check_float_tensor(name, x)
    check_experts(u_experts, log_pi, u_target)
    # the target is data (z1 - z0): a NaN there is a bad input, not a diverged model
    check_finite("u_target", u_target)
    sq = (u_experts - u_target.unsqueeze(-2)).pow(2).sum(-1)
    return log_pi - sq / (2.0 * sigma**2)


def moefm_nll(
    u_experts: torch.Tensor,
    log_pi: torch.Tensor,
    u_target: torch.Tensor,
    sigma: float,
    mask: torch.Tensor | None = None,
    include_normalizer: bool = False,
) -> torch.Tensor:
    """MoE-FM negative log-likelihood, eq. (5).

    ``-log sum_k pi_k exp(-||u_k - u*||^2 / (2 sigma^2))`` averaged over all leading positions
    (over unmasked ones when ``mask`` is given). Computed with ``logsumexp``, so it stays finite,
    with finite gradients, for tiny sigma (down to :data:`MIN_SIGMA` = 1e-6; smaller values are
    refused, since the exponent itself overflows float32 there) and for targets far from every
    expert: the gradient is then carried by the nearest expert (the sigma -> 0 hard assignment
    of Prop. A.5).

    Args:
        u_experts: expert velocities ``(..., K, m)``.
        log_pi: gate log-probabilities ``(..., K)`` (log-softmax output).
        u_target: ``z1 - z0``, shape ``(..., m)``.
        sigma: expert standard deviation (>= 1e-6); the paper uses 0.1.
        mask: optional boolean ``(...)``; ``False`` marks padding.
        include_normalizer: add ``(m/2) log(2 pi sigma^2)`` so the value is the true
            Gaussian-mixture NLL of eq. (4). It does not change gradients.

    Raises:
        ValueError: bad shapes, an empty batch, sigma outside ``[MIN_SIGMA, inf)``.
        NonFiniteError: ``u_target`` holds NaN or inf (one reduction per call).
    """
    sigma = check_sigma(sigma, MIN_SIGMA)
    nll = -torch.logsumexp(_log_joint(u_experts, log_pi, u_target, sigma), dim=-1)
    if include_normalizer:
        m = u_experts.shape[-1]
        nll = nll + 0.5 * m * math.log(2.0 * math.pi * sigma**2)
    return _masked_mean(nll, mask)


def responsibilities(
    u_experts: torch.Tensor, log_pi: torch.Tensor, u_target: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Expert responsibilities gamma_k, eq. (12): the posterior of the expert given ``u*``.

    Returns a ``(..., K)`` tensor on the simplex. As sigma -> 0 it becomes the hard nearest-expert
    assignment (Prop. A.5); as sigma -> inf it equals the routing ``pi`` (App. A.3.2).
    ``sigma`` must be at least :data:`MIN_SIGMA`, as for :func:`moefm_nll`.
    """
    sigma = check_sigma(sigma, MIN_SIGMA)
    return torch.softmax(_log_joint(u_experts, log_pi, u_target, sigma), dim=-1)


def expert_floor_loss(
    u_experts: torch.Tensor,
    u_target: torch.Tensor,
    sigma: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every expert's squared error at ``sigma``: ``mean_k ||u_k - u*||^2 / (2 sigma^2)``,
    averaged over the (unmasked) positions.

    Added to eq. (5) with weight ``w``, it raises each expert's weight on a pair from its
    responsibility (eq. 12) to ``r_k + w / K``: the gradient on ``u_k`` becomes
    ``(r_k + w / K) (u_k - u*) / sigma^2``. Eq. (5) alone never trains an expert on the pairs
    another one owns, yet frozen routing integrates the expert drawn at t = 0 over the whole
    path (YAN's ``expert_floor``).

    Args:
        u_experts: expert velocities ``(..., K, m)``.
        u_target: ``z1 - z0``, shape ``(..., m)``.
        sigma: the expert standard deviation of eq. (5) (>= 1e-6).
        mask: optional boolean ``(...)``; ``False`` marks padding.
    """
    sigma = check_sigma(sigma, MIN_SIGMA)
    check_float_tensor("u_experts", u_experts)
    check_float_tensor("u_target", u_target)
    if u_experts.dim() < 2 or tuple(u_target.shape) != (*u_experts.shape[:-2], u_experts.shape[-1]):
        raise ValueError(
            f"u_experts (..., K, m) and u_target (..., m) do not match: got "
            f"{tuple(u_experts.shape)} and {tuple(u_target.shape)}"
        )
    sq = (u_experts - u_target.unsqueeze(-2)).pow(2).sum(-1).mean(-1)
    return _masked_mean(sq / (2.0 * sigma**2), mask)


def _rbf_sum(a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float]) -> torch.Tensor:
    # squared distances by expansion, not cdist: smooth at zero distance (the diagonal)
    d2 = (a.pow(2).sum(-1)[:, None] + b.pow(2).sum(-1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)
    return sum(torch.exp(-d2 / (2.0 * s**2)) for s in bandwidths)


def mmd2(
    x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = PAPER_BANDWIDTHS
) -> torch.Tensor:
    """Unbiased squared MMD with a sum of RBF kernels (App. A.4, eq. 10).

    Args:
        x: samples from P, ``(n, d)`` with n >= 2.
        y: samples from Q, ``(n2, d)`` with n2 >= 2.
        bandwidths: kernel widths s in ``exp(-||x - x'||^2 / (2 s^2))``; the paper's set by default.
            Each must be a finite number > 0 (a NaN width would make every kernel NaN).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (n, d) and (n2, d), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    n, n2 = x.shape[0], y.shape[0]
    if n < 2 or n2 < 2:
        raise ValueError(
            f"the unbiased MMD needs at least 2 samples on each side, got {n} and {n2}"
        )
    if not bandwidths or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0
        for s in bandwidths
    ):
        raise ValueError(f"bandwidths must be finite numbers > 0, got {bandwidths!r}")
    kxx = _rbf_sum(x, x, bandwidths)
    kyy = _rbf_sum(y, y, bandwidths)
    kxy = _rbf_sum(x, y, bandwidths)
    # drop the diagonals (i == j) for the unbiased within-sample terms
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n2 * (n2 - 1))
    return sxx + syy - 2.0 * kxy.mean()
