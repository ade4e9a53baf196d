"""Speed and memory options of a training run: ``--compile``, ``--grad-checkpoint`` and the
fused AdamW (``--fused-adamw``), applied to the model before the optimiser is built.

- ``--compile``: ``torch.compile`` of every block of the encoder and of the flow trunk, in place
  (``nn.Module.compile``), so parameter names, ``state_dict`` keys and checkpoints stay as they
  are. Per block rather than the whole model: the blocks are where the time goes, one compiled
  graph serves all blocks of the same shape, and the stage-2 Euler loop (its step count drawn
  per step, ``ce_steps``) stays outside the graph instead of being unrolled into it.
- ``--grad-checkpoint``: activation checkpointing per block (:attr:`yan.blocks.Block.
  grad_checkpoint`). Stage 2 backpropagates through the unrolled Euler steps (eq. 11): each step
  runs the whole trunk, and each trunk block keeps its attention / Mamba and MLP activations
  (several times ``B x L x d`` each) for the backward pass, so memory grows with steps x blocks.
  Checkpointing per block keeps one ``B x L x d`` input per block and step and recomputes one
  block at a time in the backward pass (one more forward of the checkpointed blocks). Per block
  rather than per Euler step because the same switch then also serves stage 1 (the encoder, no
  Euler steps) and the NLL's trunk evaluation, and the recomputation peak is one block's
  activations, not a whole trunk's.
- fused AdamW: ``torch.optim.AdamW(fused=True)``, one kernel for all parameters, when every
  parameter is a floating-point CUDA tensor (``auto``, the default); else torch's default
  (``foreach``) implementation. Both compute the same update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from yan.blocks import Block

FUSED_ADAMW = ("auto", "on", "off")


def trunk_blocks(model: nn.Module) -> list[Block]:
    """The blocks of the encoder and the flow trunk of a YAN model (in module order)."""
    return [m for m in model.modules() if isinstance(m, Block)]


def enable_grad_checkpoint(model: nn.Module, enabled: bool = True) -> int:
    """Turn activation checkpointing on (or off) in every block; returns how many blocks."""
    blocks = trunk_blocks(model)
    for block in blocks:
        block.grad_checkpoint = enabled
    return len(blocks)


def compile_blocks(model: nn.Module, **options: object) -> int:
    """``torch.compile`` every block in place (``options`` go to ``torch.compile``); returns how
    many blocks. The first steps are slower while the graphs are built."""
    blocks = trunk_blocks(model)
    for block in blocks:
        block.compile(**options)
    return len(blocks)


def use_fused_adamw(params: Iterable[torch.Tensor], setting: str = "auto") -> bool:
    """Whether to build AdamW with ``fused=True``.

    ``auto``: when every parameter is a floating-point CUDA tensor (torch's fused kernel needs
    that); ``off``: never; ``on``: always, with a clear error where it cannot run.
    """
    if setting not in FUSED_ADAMW:
        raise ValueError(f"--fused-adamw must be one of {', '.join(FUSED_ADAMW)}, got {setting!r}")
    if setting == "off":
        return False
    params = list(params)
    ok = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    if setting == "on" and not ok:
        where = sorted({p.device.type for p in params}) or ["no parameters"]
        raise ValueError(
            "--fused-adamw on needs every trainable parameter on a CUDA device (they are on "
            f"{', '.join(where)}); use --fused-adamw auto or off"
        )
    return ok


@dataclass(frozen=True)
class SpeedOptions:
    """What :func:`apply_speed_options` did: blocks compiled / checkpointed, and the ``fused``
    argument of AdamW (``True``, or ``None`` for torch's default)."""

    compiled: int = 0
    checkpointed: int = 0
    fused_adamw: bool | None = None

    def describe(self) -> str:
        """The banner's summary, e.g. ``compiled 4 blocks, checkpointing 4, fused AdamW``."""
        parts = []
        if self.compiled:
            parts.append(f"compiled {self.compiled} blocks")
        if self.checkpointed:
            parts.append(f"checkpointing {self.checkpointed} blocks")
        parts.append("fused AdamW" if self.fused_adamw else "AdamW")
        return ", ".join(parts)


def apply_speed_options(
    model: nn.Module, params: Iterable[torch.Tensor], args: Any
) -> SpeedOptions:
    """``--grad-checkpoint``, ``--compile`` (in that order: each compiled block then holds its
    checkpoint) and the choice of ``--fused-adamw`` for the trainable ``params``; ``args`` is a
    :class:`yan.train_args.TrainArgs`. Call after the model is on its device."""
    checkpointed = enable_grad_checkpoint(model) if args.grad_checkpoint else 0
    compiled = compile_blocks(model) if args.compile else 0
    fused = use_fused_adamw(params, args.fused_adamw)
    return SpeedOptions(compiled, checkpointed, True if fused else None)


__all__ = [
    "FUSED_ADAMW",
    "SpeedOptions",
    "apply_speed_options",
    "compile_blocks",
    "enable_grad_checkpoint",
    "trunk_blocks",
    "use_fused_adamw",
]
