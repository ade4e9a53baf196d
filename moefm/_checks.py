"""Argument checks shared by the public API: every error names the argument and what was expected.

Tensor checks cost at most one reduction (one device sync) per call, so they can sit in
training and sampling loops; anything more expensive is computed only once a check has failed,
to say what was wrong.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch


class NonFiniteError(ValueError, FloatingPointError):
    """NaN or inf where finite numbers are needed.

    A ``ValueError`` because it is usually a bad input, and a ``FloatingPointError`` because it
    is also how a diverged run shows itself: callers that report divergences (``moefm.bench``,
    the app) catch it as the latter, command lines as the former.
    """


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(
    name: str, value: Any, *, minimum: float | None = None, positive: bool = False
) -> float:
    """A finite real number (not a bool, not a string), optionally ``> 0`` or ``>= minimum``."""
    if not _is_real(value) or not math.isfinite(float(value)):
        what = "> 0" if positive else (f">= {minimum:g}" if minimum is not None else "")
        raise ValueError(f"{name} must be a finite number {what}".rstrip() + f", got {value!r}")
    value = float(value)
    if positive and not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return value


def check_sigma(sigma: Any, minimum: float = 0.0) -> float:
    """sigma > 0 and finite; at least ``minimum`` where smaller values cannot be computed."""
    sigma = check_number("sigma", sigma, positive=True)
    if sigma < minimum:
        raise ValueError(
            f"sigma must be >= {minimum:g}, got {sigma:g}: below it ||u - u*||^2 / (2 sigma^2) "
            "and its gradient overflow float32 (sigma -> 0 is already the hard nearest-expert "
            "assignment at sigma ~ 1e-4)"
        )
    return sigma


def check_positive_int(name: str, value: Any) -> int:
    if not _is_real(value) or not float(value).is_integer() or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed for ``torch.Generator.manual_seed``: an integer >= 0."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}"
        )
    return value


def check_finite(name: str, x: torch.Tensor) -> None:
    """One ``isfinite`` reduction over ``x``."""
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"{name} contains NaN or inf values")


def check_float_tensor(name: str, x: Any) -> torch.Tensor:
    """A floating-point tensor: integer states cannot move by ``dt * u`` and integer features
    are almost always token ids passed where features belong, so both are refused."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {x.dtype}; convert it with .float()"
        )
    return x


def match_dtype(name: str, x: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``x`` as a float tensor in ``param``'s dtype, the precision the module computes in.

    Under autocast the matmuls pick their own dtype, so ``x`` is left as it is there.
    """
    check_float_tensor(name, x)
    if x.dtype == param.dtype or torch.is_autocast_enabled(x.device.type):
        return x
    return x.to(param.dtype)


def check_experts(u_experts: torch.Tensor, log_pi: torch.Tensor, u_target: torch.Tensor) -> None:
    """Shapes for eq. (5)/(12): u_experts (..., K, m), log_pi (..., K), u_target (..., m)."""
    if u_experts.dim() < 2:
        raise ValueError(f"u_experts must have shape (..., K, m), got {tuple(u_experts.shape)}")
    *lead, k, m = u_experts.shape
    if tuple(log_pi.shape) != (*lead, k):
        raise ValueError(
            f"log_pi must have shape {(*lead, k)} to match u_experts {tuple(u_experts.shape)}, "
            f"got {tuple(log_pi.shape)}"
        )
    if tuple(u_target.shape) != (*lead, m):
        raise ValueError(
            f"u_target must have shape {(*lead, m)} to match u_experts {tuple(u_experts.shape)}, "
            f"got {tuple(u_target.shape)}"
        )
    if u_target.numel() == 0:
        raise ValueError(f"empty batch: u_target has shape {tuple(u_target.shape)}")
