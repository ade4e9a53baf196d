"""Task framing: records -> (source ids, target ids) examples, as in the paper's App. B.2.

* ``pretrain``: stage-1 text. Empty source; the target is the text, cut into pieces of at most
  ``max_len`` tokens (a document of L tokens becomes ``ceil(L / max_len)`` near-equal pieces, so
  no piece is a tiny tail).
* ``infill`` (NarrativeQA in the paper): mask 5-10% of the tokens in spans of 1-3 tokens,
  on token ids; source = ids with ``mask_id`` at masked positions, target = the full ids. Long
  documents are cut like ``pretrain`` first.
* ``last-word`` (ROCStories, SimpleStories): source = the text without its last word, target =
  that word (with the space that precedes it in running text; trailing punctuation dropped).
  The paper phrases it with the last *token*; the last word is what the metric (exact match)
  compares.
* ``qa`` (bAbI, SQuAD): source = context + newline + question, target = the answer.
* ``classify`` (AG News, DBpedia, SST-2): source = the text, target = the label word.

A source longer than ``max_len`` is truncated where it hurts least (``last-word`` and ``qa``
keep the end, next to the word or question; ``classify`` keeps the start) and one warning per
call reports how many were cut; ``strict=True`` raises instead.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from yan.data.records import Record, as_text

# The downstream tasks a trained checkpoint is scored and used on (sec. 5.1): the one home of
# this list (yan.eval.TASKS, yan.loading.TASKS and yan.generate.TASKS are this tuple).
EVAL_TASKS = ("infill", "last-word", "qa", "classify")
TASKS = ("pretrain", *EVAL_TASKS)  # every framing, stage-1 pretraining included

# Fields each framing reads ("context" is optional for qa: chat-style QA has none).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "pretrain": ("text",),
    "infill": ("text",),
    "last-word": ("text",),
    "qa": ("question", "answer"),
    "classify": ("text", "label"),
}


@dataclass
class Example:
    """One training pair. ``meta`` is JSON-serialisable (``target`` string, ``doc``, masks)."""

    src_ids: list[int]
    tgt_ids: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InfillConfig:
    """Masking for the infilling task (App. B.2: 5-10% of tokens, span lengths U{1,2,3})."""

    min_rate: float = 0.05
    max_rate: float = 0.10
    max_span: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.min_rate <= self.max_rate < 1.0:
            raise ValueError(
                f"InfillConfig: need 0 < min_rate <= max_rate < 1, got "
                f"{self.min_rate}, {self.max_rate}"
            )
        if self.max_span < 1:
            raise ValueError(f"InfillConfig: max_span must be >= 1, got {self.max_span}")


def sample_mask_positions(n: int, rng: np.random.Generator, cfg: InfillConfig) -> np.ndarray:
    """Sorted positions to mask in a sequence of ``n`` tokens.

    The rate is drawn from U[min_rate, max_rate] and at least one token is masked. Span lengths
    are uniform on {1..max_span} (the last one clipped so the count is exact). Spans are placed
    uniformly at random with at least one visible token between two spans, so every masked run
    in the source really is one span of 1..max_span tokens.
    """
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    rate = rng.uniform(cfg.min_rate, cfg.max_rate)
    # Whole tokens: keep the realised fraction inside [min_rate, max_rate] whenever an integer
    # count fits (always for n >= 20 at the defaults); very short texts still get one mask.
    lo = max(1, math.ceil(cfg.min_rate * n - 1e-9))
    hi = max(lo, math.floor(cfg.max_rate * n + 1e-9))
    n_mask = min(n, max(lo, min(hi, round(rate * n))))
    lengths: list[int] = []
    while sum(lengths) < n_mask:
        lengths.append(int(rng.integers(1, cfg.max_span + 1)))
    lengths[-1] -= sum(lengths) - n_mask
    k = len(lengths)
    # Distribute the n - n_mask visible tokens into k + 1 gaps, inner gaps >= 1: pick the k
    # span slots among (extra + k) items uniformly (stars and bars).
    extra = n - n_mask - (k - 1)
    if extra < 0:  # only for tiny n: fall back to one contiguous run
        start = int(rng.integers(0, n - n_mask + 1))
        return np.arange(start, start + n_mask)
    slots = np.sort(rng.choice(extra + k, size=k, replace=False))
    gaps = np.diff(np.concatenate([[-1], slots])) - 1  # visible tokens before each span
    positions: list[int] = []
    pos = 0
    for j, (gap, length) in enumerate(zip(gaps.tolist(), lengths)):
        pos += gap + (1 if j > 0 else 0)
        positions.extend(range(pos, pos + length))
        pos += length
    return np.asarray(positions, dtype=np.int64)


def mask_example(
    tgt_ids: Sequence[int], mask_id: int, rng: np.random.Generator, cfg: InfillConfig
) -> Example:
    """Infilling pair from full ids: source has ``mask_id`` at the sampled positions."""
    positions = sample_mask_positions(len(tgt_ids), rng, cfg)
    src = list(tgt_ids)
    for p in positions.tolist():
        src[p] = mask_id
    return Example(src, list(tgt_ids), {"masked": positions.tolist()})


@dataclass
class InfillRemask:
    """Re-draw the infilling masks of a training example (a :class:`BatchIterator` transform).

    Training masks are re-drawn every epoch from ``(seed, epoch, index)``, so the model sees new
    masks each pass while a resumed run sees exactly the same ones; evaluation splits keep the
    masks fixed at :func:`build_examples` time.
    """

    mask_id: int
    config: InfillConfig = field(default_factory=InfillConfig)

    def __call__(self, example: Example, rng: np.random.Generator) -> Example:
        fresh = mask_example(example.tgt_ids, self.mask_id, rng, self.config)
        return replace(example, src_ids=fresh.src_ids, meta={**example.meta, **fresh.meta})


def chunk(ids: Sequence[int], max_len: int) -> list[list[int]]:
    """Cut ``ids`` into ``ceil(len / max_len)`` contiguous near-equal pieces (<= max_len each)."""
    n = len(ids)
    if n == 0:
        return []
    pieces = -(-n // max_len)
    bounds = np.linspace(0, n, pieces + 1).round().astype(int).tolist()
    return [list(ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


_BODY = re.compile(r"^(?P<body>.*\w)\W*$", re.DOTALL)  # text up to its last word character
_LAST_TOKEN = re.compile(r"^(?P<context>.*\S)\s+(?P<last>\S+)$", re.DOTALL)


def split_last_word(text: str) -> tuple[str, str] | None:
    """``("He went", "home")`` for ``"He went home."``; ``None`` without context or word.

    Trailing punctuation (also detached, as in ``"work ..."``) and opening quotes or brackets
    of the last word are dropped; the context keeps everything before the last word.
    """
    body = _BODY.match(text)
    if not body:
        return None
    m = _LAST_TOKEN.match(body["body"])
    if not m:
        return None
    word = re.sub(r"^\W+", "", m["last"])
    return (m["context"], word) if word else None


class _Fitter:
    """Truncate to ``max_len`` (or raise when strict) and report once per build."""

    def __init__(self, max_len: int, strict: bool, task: str) -> None:
        self.max_len, self.strict, self.task = max_len, strict, task
        self.cut: dict[str, int] = {}
        self.longest: dict[str, int] = {}

    def __call__(
        self, ids: list[int], what: str, keep: Literal["start", "end"], index: int
    ) -> list[int]:
        if len(ids) <= self.max_len:
            return ids
        if self.strict:
            raise ValueError(
                f"{self.task}: record {index} has a {what} of {len(ids)} tokens, more than "
                f"max_len={self.max_len} (strict=True)"
            )
        self.cut[what] = self.cut.get(what, 0) + 1
        self.longest[what] = max(self.longest.get(what, 0), len(ids))
        return ids[: self.max_len] if keep == "start" else ids[-self.max_len :]

    def report(self, total: int) -> None:
        for what, n in self.cut.items():
            warnings.warn(
                f"{self.task}: {n} of {total} {what}s were longer than max_len={self.max_len} "
                f"tokens (longest {self.longest[what]}) and were truncated",
                stacklevel=3,
            )


def check_fields(task: str, records: Sequence[Record]) -> None:
    """Raise a ``ValueError`` naming the missing field and the fields that exist."""
    if task not in REQUIRED_FIELDS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    if not records:
        raise ValueError(f"{task}: no records (empty data set)")
    for field_name in REQUIRED_FIELDS[task]:
        for n, rec in enumerate(records):
            if field_name not in rec:
                raise ValueError(
                    f"task {task!r} needs a {field_name!r} field, missing in record {n}; its "
                    f"fields are: {', '.join(map(str, rec))}. Map a column with "
                    f"columns={{'{field_name}': '<column>'}}"
                )


def _meta(rec: Record, **extra: Any) -> dict[str, Any]:
    meta = {"doc": as_text(rec["doc"], "doc")} if "doc" in rec else {}
    meta.update(extra)
    return meta


def build_examples(
    task: str,
    records: Sequence[Record],
    tokenizer: Any,
    *,
    max_len: int,
    seed: int = 0,
    strict: bool = False,
    infill: InfillConfig | None = None,
) -> list[Example]:
    """Frame ``records`` for ``task`` (one of :data:`TASKS`) with ``tokenizer``.

    ``seed`` fixes the infilling masks. Records whose text is empty (or, for ``last-word``,
    that have no last word after some context) are skipped.
    """
    check_fields(task, records)
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    fit = _Fitter(max_len, strict, task)
    framer: Callable[..., list[Example]] = _FRAMERS[task]
    out = framer(records, tokenizer, max_len=max_len, fit=fit, seed=seed, cfg=infill)
    fit.report(len(records))
    return out


def _pretrain(records, tok, *, max_len, fit, seed, cfg) -> list[Example]:
    texts = [as_text(r["text"], "text") for r in records]
    out: list[Example] = []
    for rec, ids in zip(records, tok.encode_batch(texts)):
        for i, piece in enumerate(chunk(ids, max_len)):
            out.append(Example([], piece, _meta(rec, chunk=i)))
    return out


def _infill(records, tok, *, max_len, fit, seed, cfg) -> list[Example]:
    rng = np.random.default_rng(seed)
    cfg = cfg or InfillConfig()
    out: list[Example] = []
    for ex in _pretrain(records, tok, max_len=max_len, fit=fit, seed=seed, cfg=cfg):
        masked = mask_example(ex.tgt_ids, tok.mask_id, rng, cfg)
        out.append(Example(masked.src_ids, masked.tgt_ids, {**ex.meta, **masked.meta}))
    return out


def _last_word(records, tok, *, max_len, fit, seed, cfg) -> list[Example]:
    pairs = [(r, split_last_word(as_text(r["text"], "text"))) for r in records]
    kept = [(r, p) for r, p in pairs if p is not None]
    src = tok.encode_batch([p[0] for _, p in kept])
    tgt = tok.encode_batch([" " + p[1] for _, p in kept])  # the word as it follows a space
    return [
        Example(fit(s, "source", "end", n), fit(t, "target", "start", n), _meta(r, target=p[1]))
        for n, ((r, p), s, t) in enumerate(zip(kept, src, tgt))
    ]


def _qa(records, tok, *, max_len, fit, seed, cfg) -> list[Example]:
    sources, answers = [], []
    for r in records:
        context = as_text(r.get("context", ""), "context").strip()
        question = as_text(r["question"], "question").strip()
        sources.append(f"{context}\n{question}" if context else question)
        answers.append(as_text(r["answer"], "answer").strip())
    src, tgt = tok.encode_batch(sources), tok.encode_batch(answers)
    return [
        Example(fit(s, "source", "end", n), fit(t, "target", "start", n), _meta(r, target=a))
        for n, (r, s, t, a) in enumerate(zip(records, src, tgt, answers))
        if s and t
    ]


def _classify(records, tok, *, max_len, fit, seed, cfg) -> list[Example]:
    texts = [as_text(r["text"], "text") for r in records]
    labels = [as_text(r["label"], "label").strip() for r in records]
    src, tgt = tok.encode_batch(texts), tok.encode_batch(labels)
    # Generation uses oracle target lengths: labels of different token counts ("positive" 2,
    # "negative" 3 with the demo's BPE) would give the answer away. Every target is padded
    # with <|padding|> to the longest label, and the padding is part of what is predicted.
    width = max((len(t) for t in tgt), default=0)
    tgt = [list(t) + [tok.pad_id] * (width - len(t)) if t else t for t in tgt]
    return [
        Example(fit(s, "source", "start", n), fit(t, "target", "start", n), _meta(r, target=lab))
        for n, (r, s, t, lab) in enumerate(zip(records, src, tgt, labels))
        if s and t
    ]


_FRAMERS: dict[str, Callable[..., list[Example]]] = {
    "pretrain": _pretrain,
    "infill": _infill,
    "last-word": _last_word,
    "qa": _qa,
    "classify": _classify,
}
