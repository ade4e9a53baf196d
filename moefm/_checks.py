"""Argument checks shared by the public API: every error names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not sigma > 0 or sigma != sigma or sigma == float("inf"):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")
    return sigma


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}"
        )
    return value


def check_finite(name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")


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
