"""The linear (rectified) probability path of eq. (2)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._checks import NonFiniteError, check_float_tensor


class PathSample(NamedTuple):
    """A point on the path and its conditional target velocity."""

    z_t: torch.Tensor
    u_target: torch.Tensor


def linear_path(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor | float) -> PathSample:
    """Interpolate ``z_t = t z1 + (1 - t) z0`` with target ``u* = z1 - z0`` (eq. 2).

    Args:
        z0: noise, shape ``(B, ..., m)``, floating point (an integer path would round
            ``t z1 + (1 - t) z0`` back to integers, so integer tensors are refused, not cast).
        z1: data, same shape as ``z0``.
        t: times in ``[0, 1]``: a scalar, or a tensor of shape ``(B,)`` (one time per sample,
            broadcast over the remaining axes), or any shape that broadcasts to ``z0`` from the
            left.

    Raises:
        TypeError: ``z0`` or ``z1`` is not a floating-point tensor.
        ValueError: shapes do not match, the batch is empty, or ``t`` lies outside ``[0, 1]``.
        NonFiniteError: ``z0`` or ``z1`` holds NaN or inf (a ``ValueError``).

    The finiteness and range checks cost one reduction per call (computed together).

    Example:
        >>> z_t, u = linear_path(torch.zeros(4, 2), torch.ones(4, 2), torch.rand(4))
    """
    check_float_tensor("z0", z0)
    check_float_tensor("z1", z1)
    if z0.shape != z1.shape:
        raise ValueError(
            f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}"
        )
    if z0.numel() == 0:
        raise ValueError(f"empty batch: z0 and z1 have shape {tuple(z0.shape)}")
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
    u = z1 - z0
    # one sync for both checks; a NaN t fails the range comparison too
    if not (torch.isfinite(u).all() & ((t >= 0) & (t <= 1)).all()):
        if not ((t >= 0) & (t <= 1)).all():
            bad = t[~((t >= 0) & (t <= 1))].flatten()[:3].tolist()
            raise ValueError(f"t must lie in [0, 1], got values such as {bad}")
        which = "z1" if not torch.isfinite(z1).all() else "z0"
        raise NonFiniteError(f"{which} contains NaN or inf values")
    return PathSample(t * z1 + (1 - t) * z0, u)
