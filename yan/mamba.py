"""Mamba (selective state space) mixers for YAN-M (paper sec. 5.1, App. B.3).

:class:`Mamba` has exactly the parameters of ``mamba_ssm.Mamba`` (``in_proj``, ``conv1d``,
``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``, same shapes and initialisation), so
weights move between the two. On CUDA with the ``mamba`` extra installed its kernels are used
(``mamba_ssm``'s fused mixer with ``causal_conv1d``'s convolution, :class:`MambaKernels`);
everywhere else :func:`yan.mamba_scan.selective_scan`, a chunked pure PyTorch scan, computes
the same function.

:class:`BiMamba` is the paper's bidirectional token mixer: two independently parameterised
Mamba modules read the sequence forward and reversed, their outputs are concatenated and
projected back to ``d_model``. The reversal is per sequence, within its own length, so right
padding never reaches a real token in either direction.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .mamba_scan import selective_scan


@dataclass(frozen=True)
class MambaKernels:
    """The fused CUDA functions of the ``mamba`` extra that are installed (``None``: missing).

    ``mamba_inner_fn`` (``mamba_ssm``) fuses the whole mixer after ``in_proj``: the causal
    convolution, ``x_proj``, ``dt_proj``, the scan and ``out_proj``; ``mamba_ssm.Mamba`` takes it
    only with ``causal_conv1d_fn`` installed (it calls that kernel), and so does :class:`Mamba`.
    Otherwise each installed kernel replaces its own step: ``causal_conv1d_fn`` the
    convolution + SiLU, ``selective_scan_fn`` the scan.
    """

    selective_scan_fn: Callable[..., torch.Tensor] | None = None
    mamba_inner_fn: Callable[..., torch.Tensor] | None = None
    causal_conv1d_fn: Callable[..., torch.Tensor] | None = None

    @property
    def fused_mixer(self) -> bool:
        return self.mamba_inner_fn is not None and self.causal_conv1d_fn is not None


NO_KERNELS = MambaKernels()


@functools.cache
def installed_kernels() -> MambaKernels:
    """The kernels of ``mamba_ssm`` and ``causal_conv1d``, imported on first use only (they need
    CUDA to build; a broken CUDA extension may raise anything on import, hence ``Exception``)."""
    scan = inner = conv = None
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn

        scan, inner = selective_scan_fn, mamba_inner_fn
    except Exception:
        pass
    try:
        from causal_conv1d import causal_conv1d_fn

        conv = causal_conv1d_fn
    except Exception:
        pass
    return MambaKernels(scan, inner, conv)


def kernels_for(x: torch.Tensor) -> MambaKernels:
    """The kernels usable on ``x``: the installed ones on CUDA, none elsewhere."""
    return installed_kernels() if x.is_cuda else NO_KERNELS


class Mamba(nn.Module):
    """One (unidirectional, causal) Mamba v1 mixer, parameter-compatible with ``mamba_ssm.Mamba``.

    Args:
        d_model: input/output width.
        d_state: SSM state size N per channel.
        d_conv: width of the causal depthwise convolution.
        expand: inner width ``d_inner = expand * d_model``.
        dt_rank: rank of the step-size projection; ``None`` is ``ceil(d_model / 16)``.
        dt_min, dt_max, dt_init_floor: range of the initial step sizes (``mamba_ssm`` defaults).

    Example:
        >>> y = Mamba(64)(torch.randn(2, 10, 64))   # (2, 10, 64)
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # like mamba_ssm: optimisers should not decay the SSM's A and D
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self._init_ssm(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, floor: float) -> None:
        # S4D-real A = -(1..N) per channel; step sizes log-uniform in [dt_min, dt_max], stored
        # as the inverse softplus in dt_proj.bias (mamba_ssm's initialisation)
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log.copy_(torch.log(n).expand(self.d_inner, -1))
        self.D.fill_(1.0)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, L, d_model) -> (b, L, d_model)``, causal along L.

        On CUDA the installed kernels take over (:class:`MambaKernels`): the fused mixer when
        both ``mamba_ssm`` and ``causal_conv1d`` are there, as in ``mamba_ssm.Mamba``; else
        each kernel its own step; the pure PyTorch path computes the same function.
        """
        kernels = kernels_for(x)
        A = -torch.exp(self.A_log.float())
        if kernels.fused_mixer:
            return self._fused(x, A, kernels)
        length = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs = self._conv(xs, kernels)
        dt, b, c = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = dt @ self.dt_proj.weight.T  # the bias enters inside the scan, before softplus
        if kernels.selective_scan_fn is not None:  # (b, channels, L) layout
            y = kernels.selective_scan_fn(
                xs.transpose(1, 2).contiguous(),
                delta.transpose(1, 2).contiguous(),
                A,
                b.transpose(1, 2).contiguous(),
                c.transpose(1, 2).contiguous(),
                self.D.float(),
                z=z.transpose(1, 2).contiguous(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            ).transpose(1, 2)
        else:
            y = selective_scan(
                xs, delta, A, b, c, self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True
            )
        assert y.shape[1] == length
        return self.out_proj(y.to(x.dtype))

    def _conv(self, xs: torch.Tensor, kernels: MambaKernels) -> torch.Tensor:
        """SiLU of the causal depthwise convolution, ``(b, L, d_inner)`` in and out."""
        if kernels.causal_conv1d_fn is not None:
            out = kernels.causal_conv1d_fn(
                x=xs.transpose(1, 2).contiguous(),  # (b, d_inner, L)
                weight=self.conv1d.weight.squeeze(1),  # (d_inner, 1, w) -> (d_inner, w)
                bias=self.conv1d.bias,
                activation="silu",
            )
            return out.transpose(1, 2)
        # pad both sides, keep the first L outputs: each sees only itself and earlier tokens
        length = xs.shape[1]
        return F.silu(self.conv1d(xs.transpose(1, 2))[..., :length].transpose(1, 2))

    def _fused(self, x: torch.Tensor, A: torch.Tensor, kernels: MambaKernels) -> torch.Tensor:
        """``mamba_ssm``'s fused mixer: everything after ``in_proj`` in one autograd function
        that recomputes the convolution and the scan's inputs in the backward pass."""
        assert kernels.mamba_inner_fn is not None
        batch, length, _ = x.shape
        # (b, 2 d_inner, L) with L contiguous, the layout the kernels read (as mamba_ssm.Mamba)
        flat = self.in_proj.weight @ x.reshape(batch * length, -1).T.to(self.in_proj.weight)
        xz = flat.view(-1, batch, length).transpose(0, 1)
        return kernels.mamba_inner_fn(
            xz,
            self.conv1d.weight,
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.out_proj.weight,
            self.out_proj.bias,
            A,
            None,  # B and C come from x_proj (input-dependent, S6)
            None,
            self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )


def reverse_within_lengths(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Reverse each row of ``x`` (``(b, L, ...)``) within its real length; padding stays put.

    ``mask`` is the right-padding mask ``(b, L)`` (``None``: no padding). The map is an
    involution, so it also undoes itself.
    """
    if mask is None:
        return x.flip(1)
    length = x.shape[1]
    lengths = mask.sum(1, keepdim=True)  # (b, 1)
    pos = torch.arange(length, device=x.device).expand(x.shape[0], -1)
    index = torch.where(pos < lengths, lengths - 1 - pos, pos)
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class BiMamba(nn.Module):
    """Bidirectional Mamba token mixer (App. B.3).

    ``proj([Mamba_fwd(x), rev(Mamba_bwd(rev(x)))])`` where ``rev`` reverses each sequence
    within its real length. Padded inputs are zeroed first, so padding values never matter.

    Example:
        >>> mix = BiMamba(64)
        >>> y = mix(torch.randn(2, 10, 64), mask=torch.arange(10) < torch.tensor([[10], [6]]))
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        self.fwd = Mamba(d_model, d_state, d_conv, expand)
        self.bwd = Mamba(d_model, d_state, d_conv, expand)
        self.proj = nn.Linear(2 * d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(b, L, d)``; ``mask`` ``(b, L)`` bool, True at real tokens, right padded."""
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        forward = self.fwd(x)
        backward = reverse_within_lengths(self.bwd(reverse_within_lengths(x, mask)), mask)
        return self.proj(torch.cat([forward, backward], dim=-1))


__all__ = [
    "NO_KERNELS",
    "BiMamba",
    "Mamba",
    "MambaKernels",
    "installed_kernels",
    "kernels_for",
    "reverse_within_lengths",
    "selective_scan",
]
