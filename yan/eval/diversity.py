"""Diversity of a set of generations (sec. 5.4): Dist-2, Self-BLEU and SemDist.

Scales: Dist-n is a ratio in [0, 1] (Li et al., 2016); Self-BLEU is sacreBLEU's 0-100 (Zhu et
al., 2018); SemDist is a mean cosine distance in [0, 2], 0 for identical texts. Higher Dist-2 and
SemDist and lower Self-BLEU mean more diverse text.
"""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu


def _check_generations(generations: Sequence[str], minimum: int) -> list[str]:
    if isinstance(generations, str):
        raise ValueError("generations must be a list of strings, not a single string")
    gens = list(generations)
    if len(gens) < minimum:
        raise ValueError(f"generations needs at least {minimum} texts, got {len(gens)}")
    for i, g in enumerate(gens):
        if not isinstance(g, str):
            raise ValueError(f"generations[{i}] must be a string, got {type(g).__name__}")
    return gens


def distinct_n(generations: Sequence[str], n: int = 2) -> float:
    """Dist-n: distinct n-grams / total n-grams, pooled over all generations.

    Tokens are whitespace-separated words, lower-cased; n-grams never span two generations.

    >>> distinct_n(["a b a b", "a b c"], n=2)  # bigrams ab ba ab | ab bc -> 3 distinct / 5
    0.6
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [
        tuple(words[i : i + n])
        for text in _check_generations(generations, 1)
        for words in [text.lower().split()]
        for i in range(len(words) - n + 1)
    ]
    if not grams:
        raise ValueError(f"generations contain no {n}-grams (every text is shorter than {n} words)")
    return len(set(grams)) / len(grams)


def dist2(generations: Sequence[str]) -> float:
    """Dist-2 of Li et al. (2016): distinct bigrams / total bigrams."""
    return distinct_n(generations, 2)


def self_bleu(generations: Sequence[str]) -> float:
    """Self-BLEU: mean sentence BLEU (sacreBLEU, 0-100) of each text against all the others.

    Costs ``len(generations)`` sentence-BLEU calls, each with ``len - 1`` references.
    """
    gens = _check_generations(generations, 2)
    scores = [
        sacrebleu.sentence_bleu(hyp, gens[:i] + gens[i + 1 :]).score for i, hyp in enumerate(gens)
    ]
    return sum(scores) / len(scores)


def sem_dist(generations: Sequence[str], *, model_path: str | None = None) -> float:
    """SemDist: mean pairwise cosine distance ``1 - cos`` of sentence embeddings over ``i != j``.

    Embeddings come from the offline all-MiniLM-L6-v2 unless ``model_path`` names another
    Sentence-BERT folder.
    """
    from yan.eval.semantic import sentence_embeddings

    gens = _check_generations(generations, 2)
    emb = sentence_embeddings(gens, model_path=model_path)
    sim = emb @ emb.T
    n = len(gens)
    mean_off_diagonal = (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))
    return float(1.0 - mean_off_diagonal)


def diversity(generations: Sequence[str], *, semantic: bool = True) -> dict[str, float]:
    """All three diversity metrics; ``semantic=False`` skips SemDist (no model load)."""
    out = {"dist2": dist2(generations), "self_bleu": self_bleu(generations)}
    if semantic:
        out["semdist"] = sem_dist(generations)
    return out
