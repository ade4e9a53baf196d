"""Optimiser and learning-rate schedule of YAN (App. B.3).

AdamW with beta = (0.9, 0.999) and weight decay 0.01 on weight matrices only (biases, norm
gains and parameters marked ``_no_weight_decay``, such as Mamba's ``A_log`` and ``D``, are
not decayed: decay would pull norm gains and the state-space decay rates towards 0, which is
not a regulariser of anything); the learning rate rises linearly from 0
over the first ``warmup`` steps and then stays constant (1e-4 for pretraining, 1e-5 for
fine-tuning in the paper, 1000 warm-up steps).

Example:
    >>> opt = build_optimizer(model.stage_parameters(1), lr=1e-4)
    >>> sched = warmup_constant(opt, warmup=1000)
    >>> # per optimiser step: opt.step(); sched.step()
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

BETAS = (0.9, 0.999)
WEIGHT_DECAY = 0.01
PRETRAIN_LR = 1e-4
FINETUNE_LR = 1e-5
WARMUP_STEPS = 1000


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    lr: float = PRETRAIN_LR,
    *,
    weight_decay: float = WEIGHT_DECAY,
    betas: tuple[float, float] = BETAS,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``params`` with the paper's betas and weight decay (App. B.3).

    Two parameter groups: matrices (``dim >= 2``) with ``weight_decay``, and the rest plus
    anything marked ``_no_weight_decay`` without (see the module docstring). ``fused`` is
    passed to ``torch.optim.AdamW`` (``True`` needs CUDA parameters, see
    :func:`yan.train_speed.use_fused_adamw`); ``None`` is torch's default implementation.
    """
    params = list(params)
    if not params:
        raise ValueError("build_optimizer: no parameters to optimise")
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    decay, no_decay = [], []
    for p in params:
        skip = p.dim() < 2 or getattr(p, "_no_weight_decay", False)
        (no_decay if skip else decay).append(p)
    groups = [
        {"params": group, "weight_decay": wd}
        for group, wd in ((decay, weight_decay), (no_decay, 0.0))
        if group
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)


def warmup_factor(step: int, warmup: int) -> float:
    """Multiplier of the base lr before optimiser step ``step + 1``: ``min(1, (step + 1) / warmup)``.

    Linear warm-up from 0 (App. B.3): the first update uses ``lr / warmup`` and step
    ``warmup`` reaches the full rate, which is kept from then on.
    """
    if warmup <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup)


def warmup_constant(optimizer: torch.optim.Optimizer, warmup: int = WARMUP_STEPS) -> LambdaLR:
    """Linear warm-up over ``warmup`` optimiser steps, then a constant rate (App. B.3)."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 steps, got {warmup}")
    return LambdaLR(optimizer, lambda step: warmup_factor(step, warmup))


__all__ = [
    "BETAS",
    "FINETUNE_LR",
    "PRETRAIN_LR",
    "WARMUP_STEPS",
    "WEIGHT_DECAY",
    "build_optimizer",
    "warmup_constant",
    "warmup_factor",
]
