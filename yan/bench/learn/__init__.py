"""``yan bench learn``: does YAN learn? An equal-budget comparison with baselines and trivial answers.

ROUGE on infilling is mostly copying (90-95% of the target is visible in the source), so this
benchmark scores what a model has to *learn*, next to what costs nothing:

- tasks (all on held-out data): ``copy`` (source = target), ``infill`` (wiki-mini, App. B.2
  masking), ``last-word`` (the final word of a wiki-mini paragraph masked at the end of the
  source: LAMBADA-style completion posed in the infilling framing every model is trained on) and
  ``classify`` (movie-reviews sentiment, fine-tuned from the infilling model);
- models: YAN-TRF and YAN-M (stage 1 -> stage 2 -> classification fine-tune), the masked
  diffusion (LLaDA-style) and GPT-2-shaped autoregressive baselines of the same size, and the
  trivial references: ``copy-source`` (output the source), ``unigram`` (the most frequent
  training token at every masked position, the source elsewhere), ``ngram`` (each masked token
  from counts of its visible neighbours in the training text: what a count table learns from
  the same data, :class:`NgramFiller`), ``majority`` (the most
  frequent label) and ``tfidf-logreg`` (scikit-learn TF-IDF + logistic regression), and two
  held to the fine-tune's data budget (``finetune_steps x batch_size`` reviews):
  ``bag-of-embeddings`` (a fastText-style classifier trained from scratch with the same
  optimiser and steps, :mod:`yan.bench.learn.bag_of_embeddings`) and ``tfidf-logreg-budget``
  (TF-IDF + LR on that many reviews);
- budget: one tokenizer, the same data, ``max_len`` 64, batch size and learning rate for every
  model, and one trainer (:func:`yan.train.train`; a baseline is ``--model gpt2`` or
  ``masked-diffusion``: the same AdamW, warm-up, clipping and seeded data order as YAN); a
  baseline trains for as many optimiser steps as YAN's two stages together (and the same
  number of classification steps). Wall-clock training seconds are reported too;
- metrics: ``token_acc`` (all target tokens), ``masked_acc`` (masked positions only),
  ``rouge1`` / ``rougeL``, ``exact_match`` (the masked last word); for classification
  ``label_acc`` (the headline) is rank classification over the training label set -- each
  generative model scores every distinct padded label of the training split (``log p(label |
  review)``, :func:`yan.evaluate.choose_labels`) and answers the best, the same closed set
  TF-IDF + logistic regression chooses from -- and ``label_acc_free`` is free greedy
  generation + exact match of the decoded string, which a model fails by writing a string
  that is no label at all (YAN decodes every label position on its own and can mix two
  labels). YAN for T in {1, 3, 4, 8} Euler steps and frozen / argmax / resample routing
  (classification: frozen routing, the flow sampled once per review and every label scored
  on that endpoint), with the gate's expert usage at t = 0 and t = 0.5. ``yan-trf-no-flow`` /
  ``yan-mamba-no-flow`` decode the encoded source with the stage-1 decoder and no flow at all:
  what the flow adds is the difference. ``yan-trf-keep-visible`` / ``yan-mamba-keep-visible``
  are the same models (T = 3, frozen) decoding with the visible source tokens kept
  (``YAN.generate(keep_visible=True)``), the clamped infilling the baselines use on aligned
  tasks: the like-for-like comparison on ``token_acc``.

Every result is a flat record ``{task, model, metric, value, T, routing, steps,
train_seconds}`` (accuracies are fractions in [0, 1], ROUGE in [0, 100]). ``--quick`` finishes in
under 30 minutes on a 2-core CPU; the full run (``make bench``) writes
``reports/yan/learn.{json,md,png}``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from yan.bench.learn.baseline_runs import (  # noqa: F401  (the public names of yan.bench.learn)
    baseline_records,
    train_baseline_run,
)
from yan.bench.learn.config import (  # noqa: F401  (the public names of yan.bench.learn)
    ARCH_NAMES,
    METRICS,
    MODELS,
    TASKS,
    LearnConfig,
)
from yan.bench.learn.data import (  # noqa: F401  (the public names of yan.bench.learn)
    NgramFiller,
    TaskData,
    last_word_examples,
    spread,
    task_data,
)
from yan.bench.learn.report import (  # noqa: F401  (the public names of yan.bench.learn)
    HEADLINE,
    PAPER_SETTING,
    TASK_METRICS,
    headline_rows,
    markdown_report,
    plot,
)
from yan.bench.learn.scoring import (  # noqa: F401  (the public names of yan.bench.learn)
    budget_records,
    classify_scores,
    label_share,
    metric_records,
    score_task,
    token_scores,
    trivial_records,
)
from yan.bench.learn.yan_runs import (  # noqa: F401  (the public names of yan.bench.learn)
    YanRun,
    decode_source,
    gate_usage,
    identical_fraction,
    low_precision_records,
    train_yan,
    yan_records,
)
from yan.bench.report import announce, write_json, write_text


# ---- the whole benchmark ------------------------------------------------------------------------
def run_learn(cfg: LearnConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train everything (or reuse finished runs in ``cfg.work``) and score it; records + meta."""
    from yan.tokenizer import YanTokenizer

    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    runs: dict[str, YanRun] = {}
    tokenizer: Path | None = None
    for arch in cfg.archs:
        print(f"== {ARCH_NAMES[arch]}: stage 1, stage 2 (infill), classification fine-tune")
        runs[arch] = train_yan(cfg, arch, tokenizer)
        tokenizer = tokenizer or runs[arch].stage1  # one tokenizer for every model
    if tokenizer is None:
        raise ValueError("archs is empty: the tokenizer comes from YAN's stage 1")
    tok = YanTokenizer.load(tokenizer)
    data = task_data(cfg, tok)
    records += trivial_records(data, tok)
    records += budget_records(cfg, data, tok)
    for arch, run in runs.items():
        print(f"== scoring {ARCH_NAMES[arch]}")
        records += yan_records(cfg, run, arch, data)
    for name in cfg.baselines:
        print(f"== {name}: {cfg.pretrain_steps} steps (infill) + {cfg.finetune_steps} (classify)")
        records += baseline_records(cfg, name, tokenizer, data)
    meta = {
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
        },
        "examples": {task: len(ex) for task, ex in data.examples.items()},
        "unigram_token": tok.decode([data.unigram_id]),
        "label_choices": [tok.decode(c) for c in data.label_choices],
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return records, meta


def learn_main(cfg: LearnConfig, out_dir: str | Path, json_path: str | Path | None = None):
    """Run, print the report, write ``learn.json`` (a list of records), ``.md`` and ``.png``."""
    out_dir = Path(out_dir)
    records, meta = run_learn(cfg)
    report = markdown_report(records, meta)
    paths = {
        "json": write_json(Path(json_path) if json_path else out_dir / "learn.json", records),
        "markdown": write_text(out_dir / "learn.md", report),
        "figure": plot(records, out_dir / "learn.png"),
    }
    return announce(report, paths)


__all__ = [
    "METRICS",
    "MODELS",
    "TASKS",
    "LearnConfig",
    "TaskData",
    "YanRun",
    "baseline_records",
    "budget_records",
    "classify_scores",
    "decode_source",
    "gate_usage",
    "headline_rows",
    "learn_main",
    "markdown_report",
    "plot",
    "last_word_examples",
    "metric_records",
    "run_learn",
    "score_task",
    "task_data",
    "token_scores",
    "train_yan",
    "trivial_records",
    "yan_records",
]
