"""Trunks and the flow model that pairs a trunk with a :class:`~moefm.heads.MoEHead`.

A *trunk* maps ``(z_t, t, cond)`` to a hidden feature; the head turns features into K expert
velocities and a gate. Anything with the four methods of :class:`MoEField` can be sampled with
:func:`moefm.sampling.sample` -- the 2D :class:`FlowModel` here and YAN's latent flow alike.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ._checks import check_float_tensor, check_positive_int, match_dtype
from .heads import MoEHead, MoEOutput


@runtime_checkable
class MoEField(Protocol):
    """What a sampler needs from a mixture-of-experts velocity model."""

    def features(self, z: torch.Tensor, t: torch.Tensor, cond: Any = None) -> Any:
        """One trunk evaluation at state ``z`` and time ``t`` of shape ``z.shape[:1]``."""

    def log_pi(self, feats: Any) -> torch.Tensor:
        """Gate log-probabilities ``(..., K)``."""

    def fields(self, feats: Any) -> torch.Tensor:
        """All expert velocities ``(..., K, m)``."""

    def field(self, feats: Any, idx: torch.Tensor) -> torch.Tensor:
        """The velocity of the chosen expert ``idx`` per position, ``(..., m)``."""


def time_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of ``t`` in [0, 1], shape ``(*t.shape, dim)`` (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    # scale t by 1000 so that [0, 1] spans many periods of the fastest frequency
    args = 1000.0 * t.to(torch.float32).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(
        t.dtype if t.is_floating_point() else torch.float32
    )


class MLPTrunk(nn.Module):
    """A time-conditioned MLP for low-dimensional data: ``[z, emb(t), cond] -> h``.

    Args:
        dim: data dimension m.
        hidden: width of every layer (the output feature size).
        depth: number of hidden layers (>= 1).
        time_dim: size of the sinusoidal time embedding.
        cond_dim: size of an optional conditioning vector concatenated to the input.
    """

    def __init__(
        self, dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 32, cond_dim: int = 0
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.hidden = check_positive_int("hidden", hidden)
        depth = check_positive_int("depth", depth)
        if time_dim < 2 or time_dim % 2:
            raise ValueError(f"time_dim must be an even integer >= 2, got {time_dim}")
        self.time_dim, self.cond_dim = time_dim, cond_dim
        layers: list[nn.Module] = []
        width = dim + time_dim + cond_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*layers)
        self.out_dim = hidden

    def forward(
        self, z: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Features ``(..., hidden)`` of states ``z (B, ..., dim)`` at times ``t``.

        ``t`` is a scalar, one time per sample ``(B,)``, or one per position ``z.shape[:-1]``.
        Floating ``z`` is cast to the parameters' dtype (float64 in, float32 features out);
        integer ``z`` is refused with a ``TypeError``.
        """
        z = match_dtype("z", z, self.net[0].weight)
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have last dimension {self.dim}, got shape {tuple(z.shape)}")
        t = torch.as_tensor(t, device=z.device)
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold real times in [0, 1], got {t.dtype}")
        t = t.to(z.dtype)
        lead = tuple(z.shape[:-1])
        if t.dim() == 1 and z.dim() >= 2 and t.shape[0] == z.shape[0]:
            t = t.reshape(-1, *([1] * (z.dim() - 2)))  # one time per sample, shared by its tokens
        elif t.dim() != 0 and tuple(t.shape) != lead:
            raise ValueError(
                f"t must be a scalar, one time per sample (shape ({lead[0] if lead else 1},)) or "
                f"one per position {lead}; got shape {tuple(t.shape)} for z of shape "
                f"{tuple(z.shape)}"
            )
        t = t.expand(lead)
        parts = [z, time_embedding(t, self.time_dim).to(z.dtype)]
        if self.cond_dim:
            if cond is None or cond.shape[-1] != self.cond_dim:
                raise ValueError(f"cond must be given with last dimension {self.cond_dim}")
            parts.append(check_float_tensor("cond", cond).to(z.dtype))
        return self.net(torch.cat(parts, dim=-1))


class FlowModel(nn.Module):
    """A trunk plus an :class:`MoEHead`; implements :class:`MoEField`.

    With ``K = 1`` this is a plain VFM model. Any module with ``forward(z, t, cond) -> h`` and an
    ``out_dim`` attribute can serve as trunk.

    Inputs follow :class:`MLPTrunk` and :class:`~moefm.heads.MoEHead`: floating-point tensors
    are cast to the parameters' dtype, integer ones refused (``TypeError``), and ``t`` must
    be a scalar or have ``z``'s batch size (``ValueError`` naming both shapes otherwise).

    Example:
        >>> model = FlowModel.mlp(dim=2, K=6)
        >>> u, log_pi = model(torch.randn(8, 2), torch.rand(8))
    """

    def __init__(self, trunk: nn.Module, head: MoEHead) -> None:
        super().__init__()
        if getattr(trunk, "out_dim", head.d_in) != head.d_in:
            raise ValueError(f"trunk.out_dim ({trunk.out_dim}) must equal head.d_in ({head.d_in})")
        self.trunk, self.head = trunk, head

    @classmethod
    def mlp(
        cls, dim: int, K: int = 1, hidden: int = 128, depth: int = 3, **trunk_kw: Any
    ) -> FlowModel:
        trunk = MLPTrunk(dim, hidden=hidden, depth=depth, **trunk_kw)
        return cls(trunk, MoEHead(hidden, dim, K))

    @property
    def K(self) -> int:
        return self.head.K

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: Any = None) -> MoEOutput:
        return self.head(self.trunk(z, t, cond))

    # MoEField
    def features(self, z: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.trunk(z, t, cond)

    def log_pi(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head.log_pi(feats)

    def fields(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head.experts(feats)

    def field(self, feats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.head.expert(feats, idx)
