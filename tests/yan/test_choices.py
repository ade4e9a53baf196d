"""Rank classification: YAN.choice_scores against generate, yan.evaluate.choose_labels for YAN
and the baselines (the learn bench's label set is tested in test_bench_learn.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from yan.baselines import build_baseline
from yan.data.tasks import Example
from yan.evaluate import Checkpoint, RunInfo, choose_labels
from yan.model import YAN

VOCAB = 64  # the tiny preset


def sources(lengths=(6, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)
    src = torch.randint(0, VOCAB - 2, mask.shape, generator=g).masked_fill(~mask, 0)
    return src, mask


@pytest.fixture(scope="module", params=["transformer", "mamba"])
def model(request):
    torch.manual_seed(0)
    return YAN.from_preset("tiny", arch=request.param).eval()


def test_choice_scores_shape_log_probabilities_and_seed(model):
    src, mask = sources()
    choices = torch.randint(0, VOCAB, (5, 3), generator=torch.Generator().manual_seed(1))
    a = model.choice_scores(src, mask, choices, steps=2, seed=3)
    assert a.shape == (3, 5) and a.dtype == torch.float32
    assert (a <= 0).all() and torch.isfinite(a).all()
    assert torch.equal(a, model.choice_scores(src, mask, choices, steps=2, seed=3))
    assert not torch.equal(a, model.choice_scores(src, mask, choices, steps=2, seed=4))
    model.train()
    try:  # scoring runs in eval mode (no dropout) and restores the mode
        assert torch.equal(a, model.choice_scores(src, mask, choices, steps=2, seed=3))
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize("routing", ["frozen", "argmax"])
def test_single_tokens_over_the_vocabulary_normalise_and_pick_the_greedy_token(model, routing):
    src, mask = sources()
    every = torch.arange(VOCAB).unsqueeze(1)  # (V, 1): each id is a candidate
    scores = model.choice_scores(src, mask, every, steps=3, routing=routing, seed=5)
    assert torch.allclose(scores.logsumexp(1), torch.zeros(3), atol=1e-5)
    greedy = model.generate(src, mask, tgt_len=1, steps=3, routing=routing, seed=5).tokens
    assert torch.equal(scores.argmax(1), greedy[:, 0])


def test_the_greedy_output_is_the_best_candidate(model):
    # the decoder factorises over positions, so among candidates that include generate's greedy
    # output (same seed: the same flow endpoint) that output scores highest
    src, mask = sources()
    greedy = model.generate(src, mask, tgt_len=4, steps=2, seed=9).tokens  # (3, 4)
    others = torch.randint(0, VOCAB, (6, 4), generator=torch.Generator().manual_seed(2))
    choices = torch.cat([others, greedy])
    scores = model.choice_scores(src, mask, choices, steps=2, seed=9)
    assert scores.argmax(1).tolist() == [6, 7, 8]


def test_choice_scores_rejects_bad_input(model):
    src, mask = sources()
    ok = torch.tensor([[1, 2], [3, 4]])
    cases = [
        (dict(choices=torch.tensor([1, 2])), "choices must be a \\(C, Lc\\) tensor"),
        (dict(choices=ok.float()), "integer token ids"),
        (dict(choices=torch.zeros(0, 2, dtype=torch.long)), "at least one candidate"),
        (dict(choices=torch.zeros(2, 0, dtype=torch.long)), "at least one candidate"),
        (dict(choices=torch.tensor([[1, VOCAB]])), "outside \\[0, vocab_size"),
        (dict(choices=torch.zeros(1, 65, dtype=torch.long)), "longer than max_len"),
        (dict(steps=0), "steps must be an integer"),
        (dict(routing="nearest"), "unknown routing"),
        (dict(src_mask=torch.zeros_like(mask)), "empty source"),
    ]
    for kwargs, message in cases:
        args = dict(src_mask=mask, choices=ok, steps=2) | kwargs
        with pytest.raises(ValueError, match=message):
            model.choice_scores(src, args.pop("src_mask"), args.pop("choices"), **args)


# ---- choose_labels ------------------------------------------------------------------------
LABELS = [[3, 4, 62], [5, 6, 7]]  # two padded labels (62 stands for <|padding|>)


def examples(n=7):
    src, mask = sources(lengths=tuple(3 + i % 4 for i in range(n)), seed=1)
    return [
        Example(row[m].tolist(), LABELS[i % 2], {"target": str(i % 2)})
        for i, (row, m) in enumerate(zip(src, mask))
    ]


def checkpoint(model, kind: str) -> Checkpoint:
    tok = SimpleNamespace(pad_id=VOCAB - 2, mask_id=VOCAB - 1, vocab_size=VOCAB)
    return Checkpoint(model, tok, kind, RunInfo(), Path("."))


def test_choose_labels_returns_a_candidate_per_example_for_yan(model):
    ckpt = checkpoint(model, "yan")
    exs = examples()
    chosen = choose_labels(ckpt, exs, LABELS, steps=2, seed=0, batch_size=3)
    assert len(chosen) == len(exs) and all(c in LABELS for c in chosen)
    # batch by batch, the same as the model's own argmax with generate_ids' seeds
    from yan.data import collate

    want = []
    for n, first in enumerate(range(0, len(exs), 3)):
        b = collate(exs[first : first + 3], VOCAB - 2)
        s = model.choice_scores(b.src, b.src_mask, torch.tensor(LABELS), steps=2, seed=n)
        want += [LABELS[i] for i in s.argmax(1).tolist()]
    assert chosen == want
    with pytest.raises(ValueError, match="YAN needs steps"):
        choose_labels(ckpt, exs, LABELS)
    with pytest.raises(ValueError, match="one length"):
        choose_labels(ckpt, exs, [[1, 2], [3]], steps=2)
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_labels(ckpt, exs, [], steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        choose_labels(ckpt, exs, LABELS, steps=2, batch_size=0)


@pytest.mark.parametrize("name", ["gpt2", "masked-diffusion"])
def test_choose_labels_returns_a_candidate_per_example_for_baselines(name):
    torch.manual_seed(0)
    base = build_baseline(
        name, "tiny", vocab_size=VOCAB, pad_id=VOCAB - 2, mask_id=VOCAB - 1, max_len=32
    ).eval()
    chosen = choose_labels(checkpoint(base, name), examples(), LABELS, steps=4, routing="mean")
    assert len(chosen) == 7 and all(c in LABELS for c in chosen)
