"""A small single-process training loop for the baselines on in-memory batches (optimiser
settings of App. B.3): a few lines to train a baseline in a notebook or a test.

Every comparison with YAN (the learn and quality benchmarks, training at scale with DDP, bf16,
gradient accumulation and checkpoints with exact resume) goes through YAN's own trainer instead,
``yan train --model gpt2|bart|masked-diffusion`` (:mod:`yan.train_objectives`), so that both
sides get the same optimiser, schedule, clipping and data order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from tqdm.auto import tqdm

from yan.baselines.common import Baseline
from yan.batch import Seq2SeqBatch
from yan.optim import warmup_constant


def _endless(batches: Iterable[Seq2SeqBatch]) -> Iterator[Seq2SeqBatch]:
    """Cycle through a re-iterable (list, DataLoader); a one-shot iterator is used once."""
    one_shot = iter(batches) is batches
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty or one_shot:
            return


def train_baseline(
    model: Baseline,
    batches: Iterable[Seq2SeqBatch],
    steps: int,
    lr: float = 1e-4,
    *,
    warmup_steps: int = 1000,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    grad_clip: float = 1.0,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` for ``steps`` optimiser steps and return the loss of every step.

    AdamW (beta 0.9 / 0.999, weight decay 0.01) with a linear warm-up from 0 over
    ``warmup_steps`` and a constant learning rate after, as in App. B.3 (1e-4 pre-training,
    1e-5 fine-tuning, 1000 warm-up steps); gradients are clipped to norm ``grad_clip``.
    ``batches`` is cycled if it can be iterated again; batches move to the model's device.
    The model is left in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if lr <= 0 or warmup_steps < 0 or grad_clip <= 0:
        raise ValueError(
            f"need lr > 0, warmup_steps >= 0, grad_clip > 0; got {lr}, {warmup_steps}, {grad_clip}"
        )
    device = model.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    schedule = warmup_constant(optimizer, warmup_steps)  # YAN's warm-up (yan.optim)
    model.train()
    losses: list[float] = []
    stream = _endless(batches)
    bar = tqdm(total=steps, disable=not progress, desc=f"train {model.config.name}")
    try:
        for _ in range(steps):
            batch = next(stream, None)
            if batch is None:
                raise ValueError(
                    f"batches ran out after {len(losses)} of {steps} steps; pass a list or a "
                    "DataLoader (re-iterable) or an iterator with enough batches"
                )
            loss = model.loss(batch.to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {len(losses)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        bar.close()
        model.eval()
    return losses
