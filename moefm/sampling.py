"""Fixed-step ODE solvers and expert routing for sampling MoE-FM (sec. 3.2).

``steps`` is the one number users care about: the number of solver steps on the uniform grid
``t_i = i / steps``. For Euler it is exactly the number of field evaluations (trunk calls); the
routing evaluation at ``t = 0`` *is* the first Euler step's evaluation, not an extra pass.

Routing modes:

- ``frozen`` (the paper's): draw ``e ~ Cat(pi(z0, 0))`` once per sample (per token in YAN) and
  integrate ``u_e`` only, computing no other expert.
- ``argmax``: like ``frozen`` with the most probable expert at ``t = 0``.
- ``resample``: draw a new expert from ``pi(z_t, t)`` at every field evaluation.
- ``mean``: the mixture-mean field ``sum_k pi_k u_k`` (a deterministic single field).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import check_choice, check_finite, check_float_tensor, check_positive_int
from .models import MoEField

SOLVERS = ("euler", "midpoint", "rk4", "dopri5")
ROUTINGS = ("frozen", "argmax", "resample", "mean")
_FIXED_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


@dataclass
class SampleResult:
    """The outcome of :func:`sample`.

    Attributes:
        z1: the endpoint, same shape as ``z0``.
        trajectory: ``(steps + 1, *z0.shape)`` states on the time grid, if asked for.
        experts: the chosen experts: ``z0.shape[:-1]`` for frozen/argmax routing,
            ``(nfe, *z0.shape[:-1])`` for resample routing, ``None`` for the mixture mean.
        nfe: number of field (trunk) evaluations.
    """

    z1: torch.Tensor
    trajectory: torch.Tensor | None
    experts: torch.Tensor | None
    nfe: int


def sample_experts(log_pi: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one expert per position from ``Cat(exp(log_pi))`` with the Gumbel-max trick."""
    u = torch.rand(log_pi.shape, generator=generator, device=log_pi.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    return (log_pi.float() + gumbel).argmax(-1)


class _Router:
    """Turns one trunk evaluation into a velocity according to the routing mode."""

    def __init__(self, model: MoEField, routing: str, generator: torch.Generator | None) -> None:
        self.model, self.routing, self.generator = model, routing, generator
        self.frozen: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []

    def __call__(self, feats: Any) -> torch.Tensor:
        if self.routing == "mean":
            pi = self.model.log_pi(feats).exp()
            return (pi.unsqueeze(-1) * self.model.fields(feats)).sum(-2)
        if self.routing == "resample":
            idx = sample_experts(self.model.log_pi(feats), self.generator)
            self.history.append(idx)
            return self.model.field(feats, idx)
        if self.frozen is None:  # first evaluation, at (z0, t=0): route once
            log_pi = self.model.log_pi(feats)
            self.frozen = (
                log_pi.argmax(-1)
                if self.routing == "argmax"
                else sample_experts(log_pi, self.generator)
            )
        return self.model.field(feats, self.frozen)

    def experts(self) -> torch.Tensor | None:
        if self.routing == "resample":
            return torch.stack(self.history) if self.history else None
        return self.frozen


def _fixed_step(
    f: Callable[[torch.Tensor, float], torch.Tensor],
    z: torch.Tensor,
    t: float,
    dt: float,
    solver: str,
) -> torch.Tensor:
    if solver == "euler":
        return z + dt * f(z, t)
    if solver == "midpoint":
        k1 = f(z, t)
        return z + dt * f(z + 0.5 * dt * k1, t + 0.5 * dt)
    k1 = f(z, t)  # rk4
    k2 = f(z + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = f(z + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = f(z + dt * k3, t + dt)
    return z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def sample(
    model: MoEField,
    z0: torch.Tensor,
    steps: int,
    *,
    solver: str = "euler",
    routing: str = "frozen",
    cond: Any = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    experts: torch.Tensor | None = None,
) -> SampleResult:
    """Integrate ``dz/dt = u(z, t)`` from ``t = 0`` to ``1`` starting at noise ``z0``.

    Args:
        model: any :class:`~moefm.models.MoEField` (e.g. :class:`~moefm.models.FlowModel`).
        z0: initial noise ``(B, ..., m)``; the time passed to the model has shape ``(B,)``.
            The state is integrated in ``z0``'s floating dtype (float64 noise gives float64
            states; the model casts its inputs to its own dtype); integer ``z0`` is refused
            with a ``TypeError``, since an integer state cannot move by ``dt * u``.
        steps: T, the number of solver steps (Euler: T field evaluations). For ``dopri5`` it is
            only the number of trajectory points to report.
        solver: ``euler``, ``midpoint``, ``rk4`` or the adaptive ``dopri5`` (needs torchdiffeq).
        routing: ``frozen`` (paper), ``argmax``, ``resample`` or ``mean``; see the module doc.
        cond: passed unchanged to ``model.features``.
        generator: seeds the expert draws.
        experts: frozen routing with the expert of every position given instead of drawn,
            long ``z0.shape[:-1]`` (e.g. the cluster of a training pair, so a path-consistent
            flow is unrolled along the expert that owns the pair; see
            :mod:`moefm.clusters`). Only with ``routing = "frozen"``.
        return_trajectory: also return the states on the grid ``t_i = i / steps``.

    Gradients flow through the unrolled solver (the stage-2 CE of eq. 11 needs them); wrap the
    call in ``torch.inference_mode()`` when sampling only.

    Example:
        >>> out = sample(FlowModel.mlp(2, K=6), torch.randn(256, 2), steps=4)
        >>> out.z1.shape, out.experts.shape, out.nfe
        (torch.Size([256, 2]), torch.Size([256]), 4)
    """
    steps = check_positive_int("steps", steps)
    check_choice("solver", solver, SOLVERS)
    check_choice("routing", routing, ROUTINGS)
    check_float_tensor("z0", z0)
    if z0.dim() < 2:
        raise ValueError(f"z0 must have shape (B, ..., m), got {tuple(z0.shape)}")
    if z0.numel() == 0:
        raise ValueError(f"empty batch: z0 has shape {tuple(z0.shape)}")
    check_finite("z0", z0)
    router = _Router(model, routing, generator)
    if experts is not None:
        if routing != "frozen":
            raise ValueError(f"experts are given for frozen routing only, got routing={routing!r}")
        if experts.dtype != torch.long or tuple(experts.shape) != tuple(z0.shape[:-1]):
            raise ValueError(
                f"experts must be a long tensor of shape {tuple(z0.shape[:-1])}, got "
                f"{experts.dtype} {tuple(experts.shape)}"
            )
        router.frozen = experts
    nfe = 0

    def f(z: torch.Tensor, t: float) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        tt = torch.full(z.shape[:1], float(t), dtype=z.dtype, device=z.device)
        return router(model.features(z, tt, cond))

    if solver == "dopri5":
        if routing == "resample":
            raise ValueError(
                "routing='resample' draws a new expert at every evaluation, a discontinuous field "
                "that an adaptive solver cannot control; use a fixed-step solver"
            )
        z1, traj = _adaptive(f, z0, steps, rtol, atol)
        return SampleResult(z1, traj if return_trajectory else None, router.experts(), nfe)

    dt = 1.0 / steps
    z, states = z0, [z0]
    for i in range(steps):
        z = _fixed_step(f, z, i * dt, dt, solver)
        if return_trajectory:
            states.append(z)
    traj = torch.stack(states) if return_trajectory else None
    return SampleResult(z, traj, router.experts(), nfe)


def _adaptive(
    f: Callable[[torch.Tensor, float], torch.Tensor],
    z0: torch.Tensor,
    steps: int,
    rtol: float,
    atol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from torchdiffeq import odeint
    except ImportError as err:  # optional dependency
        raise ImportError("solver='dopri5' needs torchdiffeq: pip install 'moefm[lab]'") from err
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=z0.dtype, device=z0.device)
    traj = odeint(
        lambda t, z: f(z, float(t.detach())), z0, grid, method="dopri5", rtol=rtol, atol=atol
    )
    return traj[-1], traj
