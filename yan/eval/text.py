"""Lexical metrics: ROUGE, SQuAD exact match / token F1, and label accuracy (sec. 5.1, App. B.2).

All per-corpus values are percentages in [0, 100], the scale of the paper's Table 1. Where an
example has several references, its score is the maximum over them (the SQuAD convention).

Normalisation follows the official SQuAD v1.1 evaluation script: lowercase, drop punctuation,
drop the articles *a*, *an*, *the*, collapse whitespace. Before that, special-token markup of
the LLaMA-3 tokenizer (``<|start_header_id|>role<|end_header_id|>`` headers and any other
``<|...|>`` token) is removed, so a decoded generation is scored on its words only.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rouge_score import rouge_scorer

Reference = str | Sequence[str]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

_HEADER = re.compile(r"<\|start_header_id\|>.*?<\|end_header_id\|>", re.DOTALL)
_SPECIAL = re.compile(r"<\|[^|<>]*\|>")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def as_reference_lists(
    references: Sequence[Reference], name: str = "references"
) -> list[list[str]]:
    """Turn ``[str | list[str], ...]`` into ``[[str, ...], ...]``; an empty list is an error."""
    out: list[list[str]] = []
    for i, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(
                f"{name}[{i}] must be a string or a non-empty list of strings, got {ref!r}"
            )
        out.append(refs)
    return out


def check_pairs(predictions: Sequence[str], references: Sequence[Reference]) -> list[list[str]]:
    """Validate a (predictions, references) pair of lists and return the reference lists."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError("predictions and references must be lists of strings, not a single string")
    if len(predictions) == 0:
        raise ValueError("predictions is empty: nothing to evaluate")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in count: {len(predictions)} vs {len(references)}"
        )
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise ValueError(f"predictions[{i}] must be a string, got {type(p).__name__}")
    return as_reference_lists(references)


def strip_special_tokens(text: str) -> str:
    """Remove chat headers (``<|start_header_id|>...<|end_header_id|>``) and ``<|...|>`` tokens."""
    return _SPECIAL.sub(" ", _HEADER.sub(" ", text))


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation after removing special-token markup.

    >>> normalize_answer("The  Cat sat.")
    'cat sat'
    """
    text = strip_special_tokens(text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1_score(prediction: str, reference: str) -> float:
    """SQuAD token F1 of one pair: harmonic mean of bag-of-token precision and recall."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:  # SQuAD: two empty answers agree, one empty answer scores 0
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def label_match_score(prediction: str, label: str) -> float:
    """1.0 if the prediction's leading words are the label, else 0.0.

    Precisely: with ``k`` the number of words of ``normalize_answer(label)`` (1 for every AG News,
    DBpedia and SST-2 label), the first ``k`` words of ``normalize_answer(prediction)`` must equal
    the normalised label. Headers and special tokens are never counted and text after the label
    is ignored, so ``"<|start_header_id|>assistant<|end_header_id|> Sports, I think"`` matches
    ``"Sports"``.
    """
    want = normalize_answer(label).split()
    if not want:
        raise ValueError(f"label {label!r} is empty after normalisation")
    return float(normalize_answer(prediction).split()[: len(want)] == want)


def _mean_best(score, predictions: Sequence[str], references: Sequence[Reference]) -> float:
    refs = check_pairs(predictions, references)
    best = [max(score(p, r) for r in rs) for p, rs in zip(predictions, refs)]
    return 100.0 * sum(best) / len(best)


def exact_match(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Corpus exact match in percent (max over each example's references)."""
    return _mean_best(exact_match_score, predictions, references)


def token_f1(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Corpus SQuAD token F1 in percent (max over each example's references)."""
    return _mean_best(token_f1_score, predictions, references)


def accuracy(predictions: Sequence[str], labels: Sequence[Reference]) -> float:
    """Classification accuracy in percent; see :func:`label_match_score` for the comparison."""
    return _mean_best(label_match_score, predictions, labels)


@lru_cache(maxsize=2)
def _rouge(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    # imported here: rouge_score loads nltk and scipy (~1.5 s), and `yan train` imports
    # yan.eval for its validation pass without ever scoring ROUGE
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)


def rouge(
    predictions: Sequence[str], references: Sequence[Reference], *, use_stemmer: bool = True
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure in percent (``rouge-score``, Porter stemming on).

    With several references per example, ``RougeScorer.score_multi`` keeps the best one.
    """
    refs = check_pairs(predictions, references)
    scorer = _rouge(use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, rs in zip(predictions, refs):
        scores = scorer.score_multi(rs, pred)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * v / len(predictions) for key, v in totals.items()}
