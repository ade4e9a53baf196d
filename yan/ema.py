"""An exponential moving average of the weights during training (``yan train --ema-decay D``).

:class:`WeightsEMA` wraps ``torch.optim.swa_utils.AveragedModel`` with the EMA update of
``get_ema_multi_avg_fn``: after each optimiser step ``ema <- D * ema + (1 - D) * w`` for every
parameter and buffer ``w`` (the first update copies ``w``), so after ``k`` updates

.. math::  \\mathrm{ema}_k = D^{k-1} w_1 + (1 - D) \\sum_{j=2}^{k} D^{k-j} w_j .

The average is a whole model (frozen parts average to themselves), saved beside the raw
weights as ``ema.safetensors`` in every checkpoint folder (with the tensor names of
``model.safetensors``, so ``YAN.from_pretrained(path, weights="ema")`` reads it like the raw
weights) and restored on resume with the number of updates it has averaged.

Example:
    >>> from yan.model import YAN
    >>> model = YAN.from_preset("tiny")
    >>> ema = WeightsEMA(model, decay=0.999)
    >>> ema.update(model)  # after optimizer.step()
    >>> ema.updates
    1
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .atomic import atomic_path
from .checkpoint import EMA_NAME


def check_decay(decay: float) -> float:
    """An EMA decay must lie strictly between 0 and 1 (1 never moves, 0 is no average)."""
    if isinstance(decay, bool) or not isinstance(decay, int | float):
        raise ValueError(f"--ema-decay must be a number in (0, 1), got {decay!r}")
    if not (0 < decay < 1 and math.isfinite(decay)):
        raise ValueError(f"--ema-decay must be in (0, 1) (e.g. 0.999), got {decay}")
    return float(decay)


class WeightsEMA:
    """The moving average of a model's parameters and buffers, on the model's device."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = check_decay(decay)
        self.averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
        )
        self.averaged.requires_grad_(False)  # never trained, only averaged

    @property
    def updates(self) -> int:
        """Optimiser steps averaged so far."""
        return int(self.averaged.n_averaged.item())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (call after every optimiser step)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model's tensors, named like the model's own ``state_dict``."""
        return self.averaged.module.state_dict()

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/ema.safetensors`` atomically (a temporary name, then a rename); the
        decay and the update count go in its metadata."""
        path = Path(folder) / EMA_NAME
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        meta = {"format": "pt", "model": "yan", "ema_decay": repr(self.decay)}
        meta["ema_updates"] = str(self.updates)
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path

    def load(self, folder: str | Path) -> None:
        """Continue from ``folder/ema.safetensors`` (resume): its tensors and update count.
        A decay that differs from the saved one applies from now on."""
        path = Path(folder) / EMA_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the checkpoint has no EMA weights")
        try:
            with safe_open(str(path), framework="pt") as f:
                updates = int((f.metadata() or {}).get("ema_updates", "0"))
            state = load_file(str(path), device=str(self.averaged.n_averaged.device))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{path} cannot be read: the file is damaged ({err})") from None
        self.averaged.module.load_state_dict(state)
        self.averaged.n_averaged.fill_(updates)


def has_ema(folder: str | Path) -> bool:
    return (Path(folder) / EMA_NAME).is_file()


def start_ema(model: nn.Module, decay: float | None, resume_from: Path | None) -> WeightsEMA | None:
    """The trainer's EMA: none without ``decay``; continued from the checkpoint a run resumes
    (``resume_from``) when it has one, otherwise started at the first optimiser step."""
    if decay is None:
        if resume_from is not None and has_ema(resume_from):
            warnings.warn(
                f"{resume_from} holds EMA weights but --ema-decay is not set: the average is "
                "not continued (the next checkpoints have none)",
                stacklevel=2,
            )
        return None
    ema = WeightsEMA(model, decay)
    if resume_from is not None:
        if has_ema(resume_from):
            ema.load(resume_from)
        else:
            warnings.warn(
                f"--ema-decay: {resume_from} has no EMA weights; the average starts at this "
                "resume, not at step 1",
                stacklevel=2,
            )
    return ema


__all__ = ["EMA_NAME", "WeightsEMA", "check_decay", "has_ema", "start_ema"]
