"""The learn bench's budget-held classification references (bag of embeddings, TF-IDF)."""

import dataclasses

import numpy as np
import pytest
import torch

from yan.bench.learn.bag_of_embeddings import bag_of_embeddings_predictions, epoch_order
from yan.bench.learn.config import LearnConfig
from yan.bench.learn.data import TaskData
from yan.bench.learn.scoring import budget_records
from yan.data.tasks import Example


def sentiment_examples(n, seed):
    """Token 1-4 are positive words, 5-8 negative, 9-30 neutral; the label is the majority."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        positive = bool(rng.integers(2))
        cue = rng.integers(1, 5, 3) + (0 if positive else 4)
        ids = np.concatenate([cue, rng.integers(9, 31, 6)])
        out.append(
            Example(rng.permutation(ids).tolist(), [0], {"target": "pos" if positive else "neg"})
        )
    return out


def test_bag_of_embeddings_learns_word_level_sentiment_and_not_without_steps():
    train, test = sentiment_examples(400, 0), sentiment_examples(200, 1)
    gold = [e.meta["target"] for e in test]
    budget = dict(batch_size=16, lr=1e-2, warmup=10, seed=0)
    learnt, seconds = bag_of_embeddings_predictions(train, test, 31, steps=200, **budget)
    assert np.mean([p == g for p, g in zip(learnt, gold)]) > 0.95 and seconds > 0
    # one step at a tenth of the rate has learnt nothing: the reference measures the budget
    untrained, _ = bag_of_embeddings_predictions(train, test, 31, steps=1, **budget)
    assert np.mean([p == g for p, g in zip(untrained, gold)]) < 0.8
    before = torch.random.get_rng_state()
    again, _ = bag_of_embeddings_predictions(train, test, 31, steps=200, **budget)
    assert again == learnt  # seeded
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left alone


def test_bag_of_embeddings_refuses_an_empty_budget_or_split():
    train = sentiment_examples(4, 0)
    with pytest.raises(ValueError, match="steps and batch_size"):
        bag_of_embeddings_predictions(train, train, 31, steps=0, batch_size=4, lr=1e-3, warmup=0)
    with pytest.raises(ValueError, match="no training example"):
        bag_of_embeddings_predictions(
            [Example([], [0], {"target": "pos"})],
            train,
            31,
            steps=1,
            batch_size=4,
            lr=1e-3,
            warmup=0,
        )


def test_epoch_order_is_a_seeded_permutation_per_epoch():
    first = epoch_order(50, 3)
    assert sorted(first) == list(range(50)) and first == epoch_order(50, 3, 0)
    assert first != epoch_order(50, 3, 1) and first != epoch_order(50, 4)


class Words:
    vocab_size = 31

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


def test_budget_records_hold_both_references_to_the_finetune_data():
    train, test = sentiment_examples(300, 0), sentiment_examples(100, 1)
    data = TaskData(
        examples={"classify": test},
        unigram_id=0,
        train_texts=[],
        train_labels=[],
        classify_train=train,
    )
    cfg = dataclasses.replace(LearnConfig.quick(), finetune_steps=5, batch_size=8)
    recs = {(r["model"], r["metric"]): r for r in budget_records(cfg, data, Words())}
    assert set(recs) == {
        (m, k)
        for m in ("bag-of-embeddings", "tfidf-logreg-budget")
        for k in ("label_acc", "label_share")
    }
    assert recs["bag-of-embeddings", "label_acc"]["steps"] == 5
    # 40 reviews (5 steps x 8) are enough for TF-IDF on this separable toy, not 5 Adam steps
    assert recs["tfidf-logreg-budget", "label_acc"]["value"] > 0.8
    assert (
        recs["bag-of-embeddings", "label_acc"]["value"]
        < recs["tfidf-logreg-budget", "label_acc"]["value"]
    )
