"""The paper's corpora on the Hugging Face hub (App. B.1-B.2), loaded with ``datasets``.

These need the network the first time (then ``datasets``' own cache). The hub ids and column
paths below are defaults; any of them can be replaced by a local file with the same columns
(``load_corpus("squad.jsonl", columns={...})``) or another hub id (``load_corpus("org/name",
columns=...)``). Every loader turns rows into the canonical records of :mod:`yan.data.records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yan.data.records import Record, apply_columns, as_text


@dataclass(frozen=True)
class HubCorpus:
    """A hub data set: id, configuration, splits and the canonical field -> column paths."""

    name: str
    hub_id: str
    tasks: tuple[str, ...]
    columns: Mapping[str, str]
    config: str | None = None
    splits: tuple[str, ...] = ("train",)
    label_words: tuple[str, ...] = ()  # class index -> label word (classification)
    dedupe: str | None = None  # canonical field whose repeated values are dropped
    streaming: bool = False  # too large to materialise: use yan.data.stream
    extra: Mapping[str, Any] = field(default_factory=dict)


HUB_CORPORA: dict[str, HubCorpus] = {
    c.name: c
    for c in (
        # Pretraining (Sec. 5.1): FineWiki 75% + FineWeb-Edu 25%, streamed.
        HubCorpus(
            "finewiki",
            "HuggingFaceFW/finewiki",
            ("pretrain",),
            {"text": "text"},
            config="en",
            streaming=True,
        ),
        HubCorpus(
            "wikipedia",
            "wikimedia/wikipedia",
            ("pretrain",),
            {"text": "text"},
            config="20231101.en",
            streaming=True,
        ),
        HubCorpus(
            "fineweb-edu",
            "HuggingFaceFW/fineweb-edu",
            ("pretrain",),
            {"text": "text"},
            config="sample-10BT",
            streaming=True,
        ),
        # Infilling: NarrativeQA summaries (mean ~766 LLaMA-3 tokens, Tab. 2); one record per
        # document, since every summary is repeated once per question.
        HubCorpus(
            "narrativeqa",
            "deepmind/narrativeqa",
            ("infill",),
            {"text": "document.summary.text", "doc": "document.id"},
            splits=("train", "validation", "test"),
            dedupe="doc",
        ),
        # Last-word completion.
        HubCorpus(
            "rocstories",
            "mintujupally/ROCStories",
            ("last-word",),
            {"text": "text"},
            splits=("train", "test"),
        ),
        HubCorpus(
            "simplestories",
            "SimpleStories/SimpleStories",
            ("last-word",),
            {"text": "story"},
            splits=("train", "test"),
        ),
        # Question answering.
        HubCorpus(
            "babi",
            "Muennighoff/babi",
            ("qa",),
            {"context": "passage", "question": "question", "answer": "answer"},
            splits=("train", "validation", "test"),
        ),
        HubCorpus(
            "squad",
            "rajpurkar/squad",
            ("qa",),
            {"context": "context", "question": "question", "answer": "answers.text.0"},
            splits=("train", "validation"),
        ),
        # Classification.
        HubCorpus(
            "ag-news",
            "fancyzhx/ag_news",
            ("classify",),
            {"text": "text", "label": "label"},
            splits=("train", "test"),
            label_words=("world", "sports", "business", "technology"),
        ),
        HubCorpus(
            "dbpedia",
            "fancyzhx/dbpedia_14",
            ("classify",),
            {"text": "content", "label": "label"},
            splits=("train", "test"),
            label_words=(
                "company",
                "school",
                "artist",
                "athlete",
                "politician",
                "transport",
                "building",
                "nature",
                "village",
                "animal",
                "plant",
                "album",
                "film",
                "book",
            ),
        ),
        # SST-2's GLUE test split has no labels (-1): train + validation = 68.2k (Tab. 2).
        HubCorpus(
            "sst2",
            "stanfordnlp/sst2",
            ("classify",),
            {"text": "sentence", "label": "label"},
            splits=("train", "validation"),
            label_words=("negative", "positive"),
        ),
    )
}


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "hub corpora need the 'datasets' package: pip install datasets "
            "(or the project's 'lm' extra: pip install 'moefm[lm]')"
        ) from err
    return datasets


def _label_word(value: Any, words: tuple[str, ...], n: int, name: str) -> str | None:
    """Class index -> word; ``None`` for unlabelled rows (GLUE test labels are -1)."""
    if not words:
        return as_text(value, "label")
    idx = int(value)
    if idx < 0:
        return None
    if idx >= len(words):
        raise ValueError(f"{name}: row {n} has label {idx}, but only {len(words)} label words")
    return words[idx]


def rows_to_records(
    rows: Any, corpus: HubCorpus, columns: Mapping[str, str] | None
) -> list[Record]:
    """Map hub rows to canonical records (user ``columns`` override the defaults)."""
    mapping = {**corpus.columns, **(columns or {})}
    records = apply_columns([dict(r) for r in rows], mapping, corpus.hub_id)
    out: list[Record] = []
    seen: set[str] = set()
    for n, rec in enumerate(records):
        keep = {k: rec[k] for k in mapping}
        if "label" in keep:
            word = _label_word(keep["label"], corpus.label_words, n, corpus.name)
            if word is None:
                continue
            keep["label"] = word
        if corpus.dedupe:
            key = as_text(keep[corpus.dedupe], corpus.dedupe)
            if key in seen:
                continue
            seen.add(key)
        out.append(keep)
    return out


def load_hub(
    corpus: HubCorpus, split: str | None = None, columns: Mapping[str, str] | None = None
) -> list[Record]:
    """All rows of ``corpus`` (every listed split, or the one named) as records."""
    if corpus.streaming:
        raise ValueError(
            f"{corpus.name!r} is a streamed pretraining corpus; use yan.data.PretrainStream "
            "(or pass a local file for a small in-memory pretraining set)"
        )
    datasets = _datasets()
    splits = (split,) if split else corpus.splits
    records: list[Record] = []
    for s in splits:
        ds = datasets.load_dataset(corpus.hub_id, corpus.config, split=s)
        records.extend(rows_to_records(ds, corpus, columns))
    return records


def load_hub_id(hub_id: str, split: str | None, columns: Mapping[str, str] | None) -> list[Record]:
    """Any hub data set by id (``"org/name"`` or ``"org/name:config"``), all splits by default."""
    datasets = _datasets()
    name, _, config = hub_id.partition(":")
    loaded = datasets.load_dataset(name, config or None, split=split)
    parts = [loaded] if split else list(loaded.values())
    records: list[Record] = []
    for part in parts:
        records.extend(apply_columns([dict(r) for r in part], columns, hub_id))
    if not records:
        raise ValueError(f"hub data set {hub_id!r} is empty")
    return records
