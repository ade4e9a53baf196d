"""Scoring generated ids for the learn bench, and the trivial references' records."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from yan.bench.learn.config import LearnConfig
from yan.bench.learn.data import TaskData
from yan.data.tasks import Example


# ---- scoring ------------------------------------------------------------------------------------
def token_scores(
    examples: Sequence[Example], generated: Sequence[Sequence[int]], mask_id: int
) -> dict[str, float]:
    """``token_acc`` over all target tokens and ``masked_acc`` over masked source positions
    (absent when no position is masked), as fractions."""
    hit = total = m_hit = m_total = 0
    for ex, gen in zip(examples, generated, strict=True):
        for pos, t in enumerate(ex.tgt_ids):
            ok = pos < len(gen) and gen[pos] == t
            hit, total = hit + ok, total + 1
            if pos < len(ex.src_ids) and ex.src_ids[pos] == mask_id:
                m_hit, m_total = m_hit + ok, m_total + 1
    out = {"token_acc": hit / max(total, 1)}
    if m_total:
        out["masked_acc"] = m_hit / m_total
    return out


def score_task(
    task: str, examples: Sequence[Example], generated: Sequence[Sequence[int]], tok: Any
) -> dict[str, float]:
    """Every metric of ``task`` for generated target ids.

    Classification decodes the ids (padding is dropped, so a padded label decodes to the
    label) and compares with the label (:func:`yan.eval.text.accuracy`): ``label_acc`` of
    whatever ids it is given, chosen or generated (see :func:`classify_scores`).
    """
    from yan.eval.text import accuracy, rouge

    if task == "classify":
        preds = [tok.decode(list(g)) for g in generated]
        return {"label_acc": accuracy(preds, [str(e.meta["target"]) for e in examples]) / 100}
    out = token_scores(examples, generated, tok.mask_id)
    preds = [tok.decode(list(g)).strip() for g in generated]
    refs = [tok.decode(e.tgt_ids).strip() for e in examples]
    scores = rouge(preds, refs)
    out.update(rouge1=scores["rouge1"], rougeL=scores["rougeL"])
    if task == "last-word":
        words = [
            tok.decode([g[p] for p in e.meta["masked"] if p < len(g)]).strip()
            for e, g in zip(examples, generated)
        ]
        want = [tok.decode([e.tgt_ids[p] for p in e.meta["masked"]]).strip() for e in examples]
        out["exact_match"] = sum(a == b for a, b in zip(words, want)) / max(len(want), 1)
    return out


def label_share(predictions: Sequence[Any]) -> float:
    """The share of predictions that are the most frequent one: 1.0 for a classifier whose
    output does not depend on its input, whatever its ``label_acc``. On a split with a 62/38
    label balance a constant output scores 62% or 38% by the label it settles on, so an
    accuracy near either number means nothing without this share next to it."""
    counts = Counter(tuple(p) if isinstance(p, list) else p for p in predictions)
    return counts.most_common(1)[0][1] / max(len(predictions), 1) if counts else 0.0


def classify_scores(
    ckpt: Any,
    examples: Sequence[Example],
    choices: Sequence[Sequence[int]],
    tok: Any,
    *,
    steps: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """``label_acc``: rank classification over ``choices`` (:func:`yan.evaluate.choose_labels`);
    ``label_share``: :func:`label_share` of the ranked choices; ``label_acc_free``: free
    greedy generation (:func:`yan.evaluate.generate_ids`). YAN uses
    frozen routing and ``steps`` Euler steps for both; masked diffusion ``steps`` denoising
    steps for generation."""
    from yan.evaluate import choose_labels, generate_ids

    chosen = choose_labels(ckpt, examples, choices, steps=steps, seed=seed, routing="frozen")
    free = generate_ids(ckpt, examples, steps=steps, seed=seed, routing="frozen").ids
    return {
        "label_acc": score_task("classify", examples, chosen, tok)["label_acc"],
        "label_share": label_share(chosen),
        "label_acc_free": score_task("classify", examples, free, tok)["label_acc"],
    }


def trivial_records(data: TaskData, tok: Any) -> list[dict[str, Any]]:
    """copy-source, unigram, ngram, majority and TF-IDF + logistic regression."""
    records = []
    for task in ("copy", "infill", "last-word"):
        examples = data.examples[task]
        sources = [list(e.src_ids) for e in examples]
        unigram = [[data.unigram_id if t == tok.mask_id else t for t in s] for s in sources]
        fills = [("copy-source", sources), ("unigram", unigram)]
        if data.ngram is not None:
            fills.append(("ngram", [data.ngram.fill(s, tok.mask_id) for s in sources]))
        for model, generated in fills:
            if task == "copy" and model != "copy-source":
                continue  # nothing is masked: identical to copy-source
            scores = score_task(task, examples, generated, tok)
            records += metric_records(task, model, scores, steps=0, seconds=0.0)
    examples = data.examples["classify"]
    labels = [str(e.meta["target"]) for e in examples]
    majority = Counter(data.train_labels).most_common(1)[0][0]
    acc = sum(lab == majority for lab in labels) / len(labels)
    scores = {"label_acc": acc, "label_share": 1.0}
    records += metric_records("classify", "majority", scores, steps=0, seconds=0.0)
    start = time.perf_counter()
    pred = tfidf_predictions(data.train_texts, data.train_labels, examples, tok)
    seconds = time.perf_counter() - start
    records += metric_records("classify", "tfidf-logreg", label_scores(pred, labels), 0, seconds)
    return records


def tfidf_predictions(
    texts: Sequence[str], labels: Sequence[str], test: Sequence[Example], tok: Any
) -> list[str]:
    """TF-IDF (word 1-2 grams) + logistic regression fitted on ``texts``, predicting the label
    of every decoded ``test`` source."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(texts), list(labels))
    return [
        str(p) for p in clf.predict(vectorizer.transform([tok.decode(e.src_ids) for e in test]))
    ]


def label_scores(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """``label_acc`` and ``label_share`` of predicted label strings."""
    acc = sum(p == g for p, g in zip(predicted, gold, strict=True)) / max(len(gold), 1)
    return {"label_acc": acc, "label_share": label_share(list(predicted))}


def budget_records(cfg: LearnConfig, data: TaskData, tok: Any) -> list[dict[str, Any]]:
    """Classification references held to the neural fine-tune's data budget, ``n =
    finetune_steps x batch_size`` reviews: ``bag-of-embeddings`` (trained from scratch with the
    benchmark's optimiser for ``finetune_steps`` steps,
    :mod:`yan.bench.learn.bag_of_embeddings`) and ``tfidf-logreg-budget`` (TF-IDF + LR fitted
    on those ``n`` reviews: the first ones of the bag's order, which see no review twice when
    the split holds ``n``). They separate what the budget allows from what a model makes of it.
    """
    from yan.bench.learn.bag_of_embeddings import bag_of_embeddings_predictions, epoch_order

    train, test = data.classify_train, data.examples["classify"]
    gold = [str(e.meta["target"]) for e in test]
    steps = cfg.finetune_steps
    budget = dict(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup)
    pred, seconds = bag_of_embeddings_predictions(
        train, test, tok.vocab_size, seed=cfg.seed, **budget
    )
    records = metric_records(
        "classify", "bag-of-embeddings", label_scores(pred, gold), steps, seconds
    )
    seen = [train[i] for i in epoch_order(len(train), cfg.seed)[: steps * cfg.batch_size]]
    start = time.perf_counter()
    pred = tfidf_predictions(
        [tok.decode(e.src_ids) for e in seen], [str(e.meta["target"]) for e in seen], test, tok
    )
    seconds = time.perf_counter() - start
    records += metric_records(
        "classify", "tfidf-logreg-budget", label_scores(pred, gold), 0, seconds
    )
    return records


def metric_records(
    task: str,
    model: str,
    scores: dict[str, float],
    steps: int,
    seconds: float,
    *,
    T: int | None = None,
    routing: str | None = None,
) -> list[dict[str, Any]]:
    """One flat record per metric."""
    return [
        {
            "task": task,
            "model": model,
            "metric": metric,
            "value": float(value),
            "T": T,
            "routing": routing,
            "steps": steps,
            "train_seconds": round(seconds, 1),
        }
        for metric, value in scores.items()
    ]


def _log(task: str, model: str, scores: dict[str, float], T: int | None, routing: str | None):
    shown = "  ".join(f"{k} {v:.3f}" if v <= 1 else f"{k} {v:.1f}" for k, v in scores.items())
    setting = f"T={T if T is not None else '-'} {routing or ''}".strip()
    print(f"  {task:<9} {model:<17} {setting:<14} {shown}", flush=True)
