"""Building blocks of YAN's encoder and vector-field trunk (sec. 5.1, App. B.3).

One :class:`Block` serves both networks:

- the *encoder* block: pre-norm, bidirectional token mixer + MLP, no time input;
- the *flow* block: the same with DiT-style adaLN time conditioning (shift/scale/gate from the
  time embedding; the gates start at zero so every block starts as the identity, Peebles & Xie
  2023) and, at the configured layers, cross-attention to the encoded source.

The token mixer is bidirectional self-attention (``arch="transformer"``) or the bidirectional
Mamba mixer of :mod:`yan.mamba` (``arch="mamba"``); Mamba has no cross-attention of its own,
so the source enters through the same explicit cross-attention layer (sec. 5.1).

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with a key padding
mask, prepared once per forward pass by :class:`Padding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .config import YANConfig
from .mamba import BiMamba


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position features ``(length, dim)`` (Vaswani et al., 2017)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freqs)
    out[:, 1::2] = torch.cos(pos * freqs[: dim // 2])
    return out


@dataclass(frozen=True)
class Padding:
    """A right-padding mask prepared once per forward pass for every block.

    Attributes:
        mask: ``(B, L)`` bool, True at real tokens; ``None`` when nothing is padded.
        attn: the same as an SDPA key mask ``(B, 1, 1, L)``; ``None`` when nothing is padded.
        keep: ``(B, 1, 1)`` 0/1 factor zeroing the attention output of rows without any real
            key (a fully masked softmax would be NaN), or ``None`` when every row has one.
    """

    mask: torch.Tensor | None
    attn: torch.Tensor | None
    keep: torch.Tensor | None

    @classmethod
    def from_mask(cls, mask: torch.Tensor | None) -> Padding:
        if mask is None or bool(mask.all()):
            return cls(None, None, None)
        attn = mask[:, None, None, :]
        empty = ~mask.any(dim=1)
        keep = None
        if bool(empty.any()):
            # let empty rows attend to everything (finite softmax), then zero their output
            attn = attn | empty[:, None, None, None]
            keep = (~empty).float()[:, None, None]
        return cls(mask, attn, keep)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad: Padding, dropout: float
) -> torch.Tensor:
    """SDPA over heads ``(B, H, L, dh)``, merged back to ``(B, Lq, H * dh)``."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=pad.attn, dropout_p=dropout)
    out = out.transpose(1, 2).flatten(2)
    return out if pad.keep is None else out * pad.keep.to(out.dtype)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention (no causal mask: YAN is non-autoregressive),
    plus, with ``conv_kernel > 0``, a depthwise convolution over positions
    (``YANConfig.conv_kernel``: local mixing that attention would take long to learn)."""

    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, conv_kernel: int = 0
    ) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.conv = (
            nn.Conv1d(d_model, d_model, conv_kernel, padding=conv_kernel // 2, groups=d_model)
            if conv_kernel
            else None
        )

    def forward(self, x: torch.Tensor, pad: Padding) -> torch.Tensor:
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        out = self.out(_attend(q, k, v, pad, drop))
        if self.conv is None:
            return out
        # padding must not leak into the last real tokens' neighbourhood
        h = x if pad.mask is None else x * pad.mask.unsqueeze(-1).to(x.dtype)
        return out + self.conv(h.transpose(1, 2)).transpose(1, 2)


class MemoryKV(NamedTuple):
    """Keys/values of the encoded source for one cross-attention layer, ``(B, H, Ls, dh)``."""

    k: torch.Tensor
    v: torch.Tensor
    pad: Padding


class CrossAttention(nn.Module):
    """Multi-head attention from the flow state to the encoded source (memory).

    The memory's keys/values do not change along the ODE, so :meth:`memory` computes them once
    per sample and every Euler step reuses them.
    """

    def __init__(self, d_model: int, d_memory: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_memory, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory(self, mem: torch.Tensor, pad: Padding) -> MemoryKV:
        b, length, _ = mem.shape
        k, v = self.kv(mem).view(b, length, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return MemoryKV(k, v, pad)

    def forward(self, x: torch.Tensor, memory: MemoryKV) -> torch.Tensor:
        b, length, d = x.shape
        if memory.k.shape[2] == 0:  # no source at all: nothing to attend to
            return x.new_zeros(b, length, d)
        q = self.q(x).view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        drop = self.dropout if self.training else 0.0
        return self.out(_attend(q, memory.k, memory.v, memory.pad, drop))


class MLP(nn.Module):
    """Two-layer GELU feed-forward network."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-sample ``(B, d)`` shift/scale."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


class Block(nn.Module):
    """Pre-norm block: token mixer, optional cross-attention, MLP; optional adaLN time input.

    Args:
        cfg: the model config (width, heads, MLP ratio, dropout, ``arch`` picks the mixer).
        time_cond: DiT adaLN-Zero conditioning on a ``(B, d_model)`` vector ``c``; without it
            the layer norms carry their own affine parameters (the encoder).
        cross_attn: add cross-attention to a memory of width ``cfg.latent_dim``.

    ``forward(x, pad, c=None, memory=None)``: ``x`` ``(B, L, d)``; ``pad`` the
    :class:`Padding` of ``x``; ``c`` the time embedding; ``memory`` the source keys/values.

    ``grad_checkpoint = True`` (:func:`yan.train_speed.enable_grad_checkpoint`) keeps only the
    block's inputs for the backward pass and recomputes its activations there
    (``torch.utils.checkpoint``, non-reentrant; the dropout masks are replayed), whenever a
    gradient is being recorded.
    """

    grad_checkpoint: bool = False

    def __init__(
        self, cfg: YANConfig, *, time_cond: bool = False, cross_attn: bool = False
    ) -> None:
        super().__init__()
        d = cfg.d_model
        self.arch = cfg.arch
        affine = not time_cond  # adaLN supplies scale and shift
        self.norm1 = nn.LayerNorm(d, elementwise_affine=affine)
        if cfg.arch == "mamba":
            self.mixer: nn.Module = BiMamba(
                d, cfg.mamba_d_state, cfg.mamba_d_conv, cfg.mamba_expand
            )
        else:
            self.mixer = SelfAttention(d, cfg.n_heads, cfg.dropout, cfg.conv_kernel)
        self.cross = (
            CrossAttention(d, cfg.latent_dim, cfg.n_heads, cfg.dropout) if cross_attn else None
        )
        self.norm_cross = nn.LayerNorm(d) if cross_attn else None
        self.norm2 = nn.LayerNorm(d, elementwise_affine=affine)
        self.mlp = MLP(d, round(cfg.mlp_ratio * d))
        self.drop = nn.Dropout(cfg.dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d)) if time_cond else None
        if self.ada is not None:  # adaLN-Zero: gates (and shifts/scales) start at 0
            nn.init.zeros_(self.ada[1].weight)
            nn.init.zeros_(self.ada[1].bias)

    def _mix(self, x: torch.Tensor, pad: Padding) -> torch.Tensor:
        return self.mixer(x, pad.mask) if self.arch == "mamba" else self.mixer(x, pad)

    def forward(
        self,
        x: torch.Tensor,
        pad: Padding,
        c: torch.Tensor | None = None,
        memory: MemoryKV | None = None,
    ) -> torch.Tensor:
        if self.grad_checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(
                self._forward, x, pad, c, memory, use_reentrant=False
            )
        return self._forward(x, pad, c, memory)

    def _forward(
        self,
        x: torch.Tensor,
        pad: Padding,
        c: torch.Tensor | None,
        memory: MemoryKV | None,
    ) -> torch.Tensor:
        if self.ada is None:
            x = x + self.drop(self._mix(self.norm1(x), pad))
        else:
            if c is None:
                raise ValueError("a time-conditioned block needs the time embedding c")
            shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
            h = self._mix(modulate(self.norm1(x), shift1, scale1), pad)
            x = x + gate1.unsqueeze(1) * self.drop(h)
        if self.cross is not None:
            if memory is None:
                raise ValueError("a cross-attention block needs the source memory")
            x = x + self.drop(self.cross(self.norm_cross(x), memory))
        if self.ada is None:
            return x + self.drop(self.mlp(self.norm2(x)))
        return x + gate2.unsqueeze(1) * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))


__all__ = [
    "Block",
    "CrossAttention",
    "MLP",
    "MemoryKV",
    "Padding",
    "SelfAttention",
    "modulate",
    "sinusoidal_positions",
]
