"""Which metrics each downstream task reports (sec. 5.1, Table 1) and one call that computes them.

=========  ==================================  ======================
task       datasets in the paper               metrics
=========  ==================================  ======================
infill     NarrativeQA                         ROUGE-1 / ROUGE-2 / ROUGE-L
last-word  ROCStories, SimpleStories           EM / BERTScore-F1
qa         bAbI, SQuAD                         F1 / BERTScore-F1 (+ EM)
classify   AG News, DBpedia, SST-2             accuracy
=========  ==================================  ======================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yan.data.tasks import EVAL_TASKS as TASKS
from yan.eval.diversity import diversity as diversity_metrics
from yan.eval.report import write_report
from yan.eval.semantic import bertscore_f1
from yan.eval.text import Reference, accuracy, check_pairs, exact_match, rouge, token_f1

_METRICS: dict[str, tuple[str, ...]] = {
    "infill": ("rouge1", "rouge2", "rougeL"),
    "last-word": ("em", "bertscore_f1"),
    "qa": ("f1", "bertscore_f1", "em"),
    "classify": ("accuracy",),
}


def metrics_for_task(task: str) -> tuple[str, ...]:
    """Metric names reported for ``task`` (one of :data:`TASKS`), in the paper's order."""
    if task not in _METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return _METRICS[task]


def score_task(
    task: str,
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    bertscore: bool = True,
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
) -> dict[str, float]:
    """Score decoded predictions for one task; every value is a percentage in [0, 100].

    Args:
        task: ``"infill"``, ``"last-word"``, ``"qa"`` or ``"classify"``.
        predictions: one decoded text per example.
        references: one string, or a list of acceptable strings, per example (max is taken).
        bertscore: compute BERTScore-F1 where the task reports it (loads a model once).
        bertscore_model: ``None`` for the offline MiniLM, a local folder, or ``"roberta-large"``.
        bertscore_layers: BERTScore layer for ``bertscore_model`` (see :func:`bertscore_f1`).

    Example:
        >>> score_task("qa", ["the Cat sat."], ["cat sat"], bertscore=False)
        {'f1': 100.0, 'em': 100.0}
    """
    names = metrics_for_task(task)
    check_pairs(predictions, references)
    out: dict[str, float] = {}
    for name in names:
        if name in ("rouge1", "rouge2", "rougeL"):
            if name not in out:
                out.update(rouge(predictions, references))
        elif name == "em":
            out["em"] = exact_match(predictions, references)
        elif name == "f1":
            out["f1"] = token_f1(predictions, references)
        elif name == "accuracy":
            out["accuracy"] = accuracy(predictions, references)
        elif name == "bertscore_f1" and bertscore:
            out["bertscore_f1"] = bertscore_f1(
                predictions, references, model_type=bertscore_model, num_layers=bertscore_layers
            )
    return out


def evaluate_generations(
    task: str,
    predictions: Sequence[str],
    references: Sequence[Reference],
    *,
    diversity: bool = False,
    name: str = "model",
    json_path: str | Path | None = None,
    md_path: str | Path | None = None,
    **scoring: Any,
) -> dict[str, float]:
    """:func:`score_task`, optionally diversity (sec. 5.4) of the predictions, optionally
    written out.

    This is the entry point for a ``yan eval`` command: decode the generations to text, call this,
    and get a flat ``{metric: value}`` dict. ``scoring`` are :func:`score_task`'s keywords
    (``bertscore``, ``bertscore_model``, ``bertscore_layers``). With ``diversity=True`` the keys
    ``dist2``, ``self_bleu`` and ``semdist`` are added (needs at least two predictions). When
    ``json_path`` and/or ``md_path`` are given, the result is written as ``{name: metrics}`` by
    :func:`write_report`.
    """
    results = score_task(task, predictions, references, **scoring)
    if diversity:
        results.update(diversity_metrics(predictions))
    if json_path is not None or md_path is not None:
        write_report({name: results}, json_path, md_path)
    return results


# The name of an earlier release: "evaluate" also meant the training pass and the benchmarks.
evaluate = score_task
