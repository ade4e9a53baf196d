"""Evaluation metrics for YAN and its baselines (sec. 5.1, 5.4, App. B.2).

Task metrics (percent): ROUGE-1/2/L, exact match, SQuAD token F1, BERTScore-F1, accuracy.
Diversity: Dist-2, Self-BLEU, SemDist. Everything runs offline (all-MiniLM-L6-v2 ships in a
package). Typical use::

    from yan.eval import evaluate_generations
    scores = evaluate_generations("qa", predictions, references, md_path="out/qa.md")

The in-training validation pass of ``yan train`` (loss and token accuracies summed over ranks)
is :func:`validate`; the metrics of one task's decoded predictions are :func:`score_task`, and
scoring a finished checkpoint (plus diversity and a report) is :func:`evaluate_generations`.
"""

from yan.eval.diversity import dist2, distinct_n, diversity, self_bleu, sem_dist
from yan.eval.report import markdown_table, write_report
from yan.eval.semantic import (
    bertscore_f1,
    default_model_path,
    load_bertscorer,
    load_sentence_encoder,
    sentence_embeddings,
)
from yan.eval.tasks import TASKS, evaluate, evaluate_generations, metrics_for_task, score_task
from yan.eval.text import (
    ROUGE_TYPES,
    accuracy,
    exact_match,
    exact_match_score,
    label_match_score,
    normalize_answer,
    rouge,
    strip_special_tokens,
    token_f1,
    token_f1_score,
)
from yan.eval.validate import ValidationSums, validate

__all__ = [
    "ROUGE_TYPES",
    "TASKS",
    "ValidationSums",
    "accuracy",
    "bertscore_f1",
    "default_model_path",
    "dist2",
    "distinct_n",
    "diversity",
    "evaluate",
    "evaluate_generations",
    "score_task",
    "exact_match",
    "exact_match_score",
    "label_match_score",
    "load_bertscorer",
    "load_sentence_encoder",
    "markdown_table",
    "metrics_for_task",
    "normalize_answer",
    "rouge",
    "self_bleu",
    "sem_dist",
    "sentence_embeddings",
    "strip_special_tokens",
    "token_f1",
    "token_f1_score",
    "validate",
    "write_report",
]
