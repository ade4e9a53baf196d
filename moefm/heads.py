"""The mixture-of-experts head of MoE-FM (sec. 3.2): K expert velocity fields and a gate."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._checks import check_positive_int, match_dtype


class MoEOutput(NamedTuple):
    """All expert velocities ``u`` of shape ``(..., K, m)`` and gate log-probs ``(..., K)``."""

    u: torch.Tensor
    log_pi: torch.Tensor


class MoEHead(nn.Module):
    """K linear expert heads and a 2-layer MLP gate on top of any trunk feature (eq. 4).

    The experts share the trunk; each owns one linear map ``d_in -> m``. Their weights live in a
    single ``(K, m, d_in)`` tensor so that all experts cost one batched matmul in training, and a
    chosen expert per position can be applied without touching the others at inference
    (:meth:`expert`). With ``K = 1`` the gate is constant (log pi = 0) and the head is exactly a
    linear VFM output layer, so eq. (5) is eq. (2) scaled by ``1 / (2 sigma^2)``.

    Args:
        d_in: trunk feature size.
        m: state (velocity) dimension.
        K: number of experts (>= 1); the paper uses 6.
        gate_hidden: hidden width of the gate MLP (default ``d_in``).
        gate_in: size of the gate input (default ``d_in``: the trunk feature itself). YAN feeds
            the trunk state together with the pooled source and the time embedding.

    Inputs: floating-point features are cast to the head's parameter dtype (float64 features
    into a float32 head give float32 outputs, the precision the head computes in; under
    autocast they are left to autocast). Integer or boolean features are refused with a
    ``TypeError``: they are almost always ids passed where features belong.

    Example:
        >>> head = MoEHead(d_in=64, m=2, K=6)
        >>> u, log_pi = head(torch.randn(10, 64))   # (10, 6, 2), (10, 6)
    """

    def __init__(
        self, d_in: int, m: int, K: int, gate_hidden: int | None = None, gate_in: int | None = None
    ) -> None:
        super().__init__()
        self.d_in = check_positive_int("d_in", d_in)
        self.m = check_positive_int("m", m)
        self.K = check_positive_int("K", K)
        self.gate_in = check_positive_int("gate_in", gate_in or d_in)
        hidden = check_positive_int("gate_hidden", gate_hidden or d_in)
        self.weight = nn.Parameter(torch.empty(self.K, self.m, self.d_in))
        self.bias = nn.Parameter(torch.zeros(self.K, self.m))
        self.bias._no_weight_decay = True  # type: ignore[attr-defined]  # a bias, though 2-D
        # a one-expert gate is the constant pi = 1: no parameters, so nothing sits unused
        self.gate = (
            nn.Sequential(nn.Linear(self.gate_in, hidden), nn.SiLU(), nn.Linear(hidden, self.K))
            if self.K > 1
            else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # each expert initialised like an nn.Linear(d_in, m), independently so experts differ
        bound = 1.0 / self.d_in**0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def _input(self, h: torch.Tensor, size: int, name: str) -> torch.Tensor:
        h = match_dtype(name, h, self.weight)
        if h.shape[-1] != size:
            raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(h.shape)}")
        return h

    def experts(self, h: torch.Tensor) -> torch.Tensor:
        """All expert velocities, ``(..., K, m)``."""
        h = self._input(h, self.d_in, "h")
        return torch.einsum("...d,kmd->...km", h, self.weight) + self.bias

    def log_pi(self, g: torch.Tensor) -> torch.Tensor:
        """Gate log-probabilities ``log pi(z_t, t)``, ``(..., K)``."""
        g = self._input(g, self.gate_in, "gate input g")
        if self.gate is None:  # K = 1: log pi = 0, exactly VFM
            return g.new_zeros(*g.shape[:-1], 1)
        logits = self.gate(g)
        # normalised in at least float32: a bfloat16 model's routing draws from these
        return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)

    def expert(self, h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The chosen expert's velocity per position, ``(..., m)``, computing no other expert.

        Positions are grouped by expert, so the cost is one ``d_in x m`` matmul per position
        whatever K is (frozen-routing sampling, sec. 3.2).

        Raises:
            TypeError: ``idx`` is not an integer tensor.
            ValueError: ``idx`` has the wrong shape or an index outside ``[0, K)``. The range
                check is free for K > 1 (the grouping already counts the positions of every
                expert) and one reduction for K = 1.
        """
        h = self._input(h, self.d_in, "h")
        if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex():
            what = idx.dtype if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise TypeError(f"idx must be an integer tensor of expert indices, got {what}")
        if idx.dtype == torch.bool:
            raise TypeError("idx must be an integer tensor of expert indices, got torch.bool")
        if tuple(idx.shape) != tuple(h.shape[:-1]):
            raise ValueError(f"idx must have shape {tuple(h.shape[:-1])}, got {tuple(idx.shape)}")
        if self.K == 1:
            if idx.numel() and bool((idx != 0).any()):
                self._bad_indices(idx)
            return h @ self.weight[0].T + self.bias[0]
        flat_h = h.reshape(-1, self.d_in)
        flat_idx = idx.reshape(-1)
        out = flat_h.new_empty(flat_h.shape[0], self.m)
        covered = 0
        for k in range(self.K):  # K is small (6); no per-position Python work
            sel = (flat_idx == k).nonzero(as_tuple=True)[0]
            covered += sel.numel()
            if sel.numel():
                out[sel] = flat_h[sel] @ self.weight[k].T + self.bias[k]
        if covered != flat_idx.numel():  # some position chose no existing expert: out is unset
            self._bad_indices(flat_idx)
        return out.reshape(*h.shape[:-1], self.m)

    def _bad_indices(self, idx: torch.Tensor) -> None:
        bad = idx[(idx < 0) | (idx >= self.K)].unique()[:5].tolist()
        raise ValueError(f"idx holds expert indices outside [0, K={self.K}): {bad}")

    def forward(self, h: torch.Tensor, g: torch.Tensor | None = None) -> MoEOutput:
        """Return all expert velocities and gate log-probs; ``g`` defaults to ``h``."""
        return MoEOutput(self.experts(h), self.log_pi(h if g is None else g))
