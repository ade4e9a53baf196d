"""The validation pass during training (``yan train``): loss and token accuracies of the model
at the current step on fixed validation batches, split over ranks and summed over all of them.

This is the cheap in-training check of eq. (8) / eq. (11); scoring a finished checkpoint on a
task with ROUGE, EM, F1 and the rest is :func:`yan.eval.evaluate_generations` (``yan eval``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from yan.batch import Seq2SeqBatch
from yan.distributed import DistEnv, all_reduce_sum

if TYPE_CHECKING:
    from yan.model import YAN


@dataclass
class ValidationSums:
    """Running totals of one validation pass, as float64 scalars on the run's device (summed
    there, and all-reduced over ranks in one call)."""

    tokens: torch.Tensor  # target tokens: the weight of each batch's mean loss
    loss: torch.Tensor  # sum over batches of loss x tokens
    ce: torch.Tensor  # sum over batches of CE x tokens
    hits: torch.Tensor  # tokens right: reconstructed (stage 1) or generated (stage 2)
    scored: torch.Tensor  # tokens behind ``hits``
    masked_hits: torch.Tensor  # of those, tokens right at masked source positions (infilling)
    masked: torch.Tensor  # masked source positions scored

    @classmethod
    def zeros(cls, device: torch.device) -> ValidationSums:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: torch.zeros((), dtype=torch.float64, device=device) for n in names})

    def all_reduce(self, env: DistEnv) -> None:
        """Sum every total over the ranks, in one collective call."""
        names = [f.name for f in dataclasses.fields(self)]
        flat = torch.stack([getattr(self, n) for n in names])
        all_reduce_sum(flat, env)
        for n, value in zip(names, flat):
            setattr(self, n, value)

    def metrics(self, stage: int) -> dict[str, float]:
        """``val_loss``, ``val_ce``, ``val_recon_acc`` (stage 1) or ``val_token_acc`` (stage 2),
        and ``val_masked_acc`` where masked positions were scored."""
        total = max(float(self.tokens), 1.0)
        out = {"val_loss": float(self.loss) / total, "val_ce": float(self.ce) / total}
        key = "val_recon_acc" if stage == 1 else "val_token_acc"
        out[key] = float(self.hits) / max(float(self.scored), 1.0)
        if float(self.masked) > 0:
            out["val_masked_acc"] = float(self.masked_hits) / float(self.masked)
        return out


Autocast = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class ValidationSettings:
    """What every validation pass of a run shares, whatever the model.

    Attributes:
        mask_id: infilling's ``<|mask|>`` id: also score the masked source positions;
            ``None`` for the other tasks.
        steps: Euler steps T of stage 2's generations (YAN only).
        seed: the run seed; batch ``i``'s generation noise is ``seed + i``.
        autocast: the run's autocast context (bf16 on GPU).
    """

    mask_id: int | None
    steps: int
    seed: int
    autocast: Autocast = nullcontext


@contextmanager
def evaluating(model: torch.nn.Module, device: torch.device, seed: int | None = None):
    """``model`` in eval mode (no dropout) under a forked RNG, seeded with ``seed`` when given:
    validating never changes the training randomness, and the training mode comes back."""
    fork = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        if seed is not None:
            torch.manual_seed(seed)
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)


def rank_share(batches: Sequence[Seq2SeqBatch], env: DistEnv) -> Iterator[tuple[int, Seq2SeqBatch]]:
    """This rank's share of the validation batches (every ``world_size``-th, from its rank),
    with their indices, on the run's device; the ranks' sums are all-reduced afterwards."""
    for i, batch in enumerate(batches):
        if i % env.world_size == env.rank:
            yield i, batch.to(env.device)


@torch.no_grad()
def validate(
    model: YAN,
    batches: list[Seq2SeqBatch],
    stage: int,
    env: DistEnv,
    *,
    mask_id: int | None,
    steps: int,
    seed: int,
    autocast: Autocast,
) -> dict[str, float]:
    """Validation loss and token accuracies, batches split over ranks, sums all-reduced.

    Stage 1: loss of eq. (8) without latent noise, its CE, and reconstruction accuracy. Stage 2:
    loss of eq. (11), and the accuracy of ``model.generate`` with ``steps`` Euler steps and
    oracle target lengths, over all target tokens and (infilling, ``mask_id`` given) over masked
    positions. Runs under a forked RNG so that validating never changes the training randomness.

    Returns:
        The metrics by name (see :meth:`ValidationSums.metrics`), the same on every rank.
    """
    device = env.device
    sums = ValidationSums.zeros(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with evaluating(model, device):
        for i, batch in rank_share(batches, env):
            n = batch.tgt_mask.sum().double()
            with autocast():
                if stage == 1:
                    out: Any = model.stage1_loss(batch, noise=False, generator=gen)
                else:
                    out = model.stage2_loss(batch, generator=gen)
            sums.tokens += n
            sums.loss += out.loss.double() * n
            sums.ce += out.ce.double() * n
            if stage == 1:
                sums.hits += out.accuracy.double() * n
                sums.scored += n
                continue
            with autocast():
                g = model.generate(
                    batch.src,
                    batch.src_mask,
                    tgt_len=batch.tgt_mask.sum(1),
                    steps=steps,
                    seed=seed + i,
                )
            width = g.tokens.shape[1]
            tgt, tmask = batch.tgt[:, :width], batch.tgt_mask[:, :width]
            hit = (g.tokens == tgt) & tmask
            sums.hits += hit.sum()
            sums.scored += tmask.sum()
            if mask_id is not None and batch.src.shape == batch.tgt.shape:
                masked = (batch.src == mask_id)[:, :width] & tmask
                sums.masked_hits += (hit & masked).sum()
                sums.masked += masked.sum()
    sums.all_reduce(env)
    return sums.metrics(stage)


__all__ = ["ValidationSettings", "ValidationSums", "evaluating", "rank_share", "validate"]
