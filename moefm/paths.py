"""The linear (rectified) probability path of eq. (2)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class PathSample(NamedTuple):
    """A point on the path and its conditional target velocity."""

    z_t: torch.Tensor
    u_target: torch.Tensor


def linear_path(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor | float) -> PathSample:
    """Interpolate ``z_t = t z1 + (1 - t) z0`` with target ``u* = z1 - z0`` (eq. 2).

    Args:
        z0: noise, shape ``(B, ..., m)``.
        z1: data, same shape as ``z0``.
        t: a scalar, or a tensor of shape ``(B,)`` (one time per sample, broadcast over the
            remaining axes), or any shape that broadcasts to ``z0`` from the left.

    Example:
        >>> z_t, u = linear_path(torch.zeros(4, 2), torch.ones(4, 2), torch.rand(4))
    """
    if z0.shape != z1.shape:
        raise ValueError(
            f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}"
        )
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    if t.dim() < z0.dim():
        if tuple(t.shape) != tuple(z0.shape[: t.dim()]):
            raise ValueError(
                f"t must be a scalar, have a leading shape of z0 {tuple(z0.shape)}, or broadcast "
                f"to it; got {tuple(t.shape)}"
            )
        t = t.reshape(*t.shape, *([1] * (z0.dim() - t.dim())))
    elif t.dim() > z0.dim() or torch.broadcast_shapes(t.shape, z0.shape) != z0.shape:
        raise ValueError(f"t of shape {tuple(t.shape)} does not broadcast to z0 {tuple(z0.shape)}")
    return PathSample(t * z1 + (1 - t) * z0, z1 - z0)
