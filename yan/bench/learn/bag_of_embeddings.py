"""The ``bag-of-embeddings`` classification reference: the simplest neural classifier, trained
from scratch on the fine-tuning budget of the neural models.

A fastText-style model (Joulin et al., 2017): the mean of learnt token embeddings, then one
linear layer over the labels. It sees exactly what a fine-tune sees, ``finetune_steps`` batches
of ``batch_size`` reviews drawn from the training split, with the benchmark's optimiser (AdamW
with the project's parameter groups, ``lr``, linear warm-up then constant). Its accuracy says
what that budget can teach a model that must learn word-level sentiment from nothing; where
it, too, stays near the majority class, a neural model's near-constant classifier is the
budget's limit, not the model's. TF-IDF + logistic regression instead solves a convex problem
to convergence on the whole split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from yan.data.tasks import Example
from yan.optim import build_optimizer, warmup_constant

EMBED_DIM = 64


class BagOfEmbeddings(nn.Module):
    """``logits = W mean_i e(x_i) + b`` over the tokens of a source."""

    def __init__(self, vocab_size: int, n_labels: int, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, dim, mode="mean")
        self.out = nn.Linear(dim, n_labels)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids, offsets))


def _pack(sources: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """EmbeddingBag's flat ids and per-bag offsets."""
    lengths = torch.tensor([len(s) for s in sources])
    offsets = torch.zeros_like(lengths)
    offsets[1:] = lengths.cumsum(0)[:-1]
    return torch.tensor([int(i) for s in sources for i in s], dtype=torch.long), offsets


def epoch_order(n: int, seed: int, epoch: int = 0) -> list[int]:
    """The order in which epoch ``epoch`` visits ``n`` training examples."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def bag_of_embeddings_predictions(
    train: Sequence[Example],
    test: Sequence[Example],
    vocab_size: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    seed: int = 0,
) -> tuple[list[str], float]:
    """Train :class:`BagOfEmbeddings` on ``train`` (labels: ``meta["target"]``) and predict
    the label string of every ``test`` example; also returns the training seconds.

    Batches follow :func:`epoch_order`, one epoch after another.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    train = [e for e in train if len(e.src_ids) > 0]
    if not train:
        raise ValueError("bag_of_embeddings_predictions: no training example with a source")
    names = sorted({str(e.meta["target"]) for e in train})
    index = {name: i for i, name in enumerate(names)}
    labels = torch.tensor([index[str(e.meta["target"])] for e in train])
    with torch.random.fork_rng():  # seeded weights, and the caller's RNG left as it was
        torch.manual_seed(seed)
        model = BagOfEmbeddings(vocab_size, len(names))
    optimizer = build_optimizer(model.parameters(), lr)
    schedule = warmup_constant(optimizer, warmup)
    order: list[int] = []
    epoch = 0
    start = time.perf_counter()
    for _ in range(steps):
        while len(order) < batch_size:
            order += epoch_order(len(train), seed, epoch)
            epoch += 1
        batch, order = order[:batch_size], order[batch_size:]
        ids, offsets = _pack([train[i].src_ids for i in batch])
        loss = nn.functional.cross_entropy(model(ids, offsets), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    # an empty source is an empty bag (zero vector): the model's bias decides it
    with torch.inference_mode():
        predicted = model(*_pack([e.src_ids for e in test])).argmax(-1).tolist()
    return [names[i] for i in predicted], seconds


__all__ = ["BagOfEmbeddings", "bag_of_embeddings_predictions", "epoch_order"]
