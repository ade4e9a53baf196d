"""Streamed stage-1 pretraining data: FineWiki 75% + FineWeb-Edu 25% (Sec. 5.1, App. B.1).

The pretraining corpora are too large to download, so documents are streamed with
``datasets`` (``streaming=True``), mixed by ``interleave_datasets`` with the given
probabilities, tokenised, cut into pieces of at most ``max_len`` tokens (as the ``pretrain``
framing does) and batched with an empty source. Any source may be a local file (``.txt``,
``.jsonl``, ``.json``, ``.csv``, ``.parquet``) instead of a hub corpus, which is how it is
tested offline.

Splits of a stream: a document goes to train / val / test by a hash of its text (90/5/5), so
the split is deterministic without ever listing the corpus.

Resuming: :meth:`PretrainStream.state_dict` holds the ``datasets`` stream position plus the
token pieces read but not yet batched, so a restored stream continues with the same next batch.
With ``shuffle_buffer > 0`` ``datasets`` refills its shuffle buffer on resume, so the order
after a restart differs from an uninterrupted run (the data seen stays a fair sample); use
``shuffle_buffer=0`` for exact resumption.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from yan.batch import Seq2SeqBatch
from yan.data.batching import collate
from yan.data.hub import HUB_CORPORA, _datasets
from yan.data.records import JSONL_SUFFIXES, TEXT_SUFFIXES, _format_of
from yan.data.tasks import Example, chunk

DEFAULT_SOURCES = ("finewiki", "fineweb-edu")
DEFAULT_WEIGHTS = (0.75, 0.25)
_READ_GROUP = 64  # documents tokenised per backend call


def hash_split(text: str, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> str:
    """``"train"``, ``"val"`` or ``"test"`` from a stable hash of the document text."""
    u = zlib.crc32(text.encode("utf-8")) / 2**32
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


def _open_source(source: str, text_column: str | None) -> Any:
    """A streamed ``IterableDataset`` with one column ``text``."""
    datasets = _datasets()
    path = Path(source).expanduser()
    if source in HUB_CORPORA:
        spec = HUB_CORPORA[source]
        ds = datasets.load_dataset(spec.hub_id, spec.config, split="train", streaming=True)
        column = text_column or spec.columns["text"]
    elif path.exists():
        files = sorted(str(p) for p in path.iterdir()) if path.is_dir() else [str(path)]
        data, _ = _format_of(Path(files[0]))
        builders = {
            ".csv": ("csv", {}),
            ".tsv": ("csv", {"delimiter": "\t"}),
            ".parquet": ("parquet", {}),
            ".json": ("json", {}),
        }
        builders.update({s: ("text", {}) for s in TEXT_SUFFIXES})
        builders.update({s: ("json", {}) for s in JSONL_SUFFIXES})
        if data not in builders:
            raise ValueError(f"cannot stream {source!r}: unsupported file type {data!r}")
        builder, kwargs = builders[data]
        ds = datasets.load_dataset(
            builder, data_files=files, split="train", streaming=True, **kwargs
        )
        column = text_column or "text"
    elif "/" in source:
        name, _, config = source.partition(":")
        ds = datasets.load_dataset(name, config or None, split="train", streaming=True)
        column = text_column or "text"
    else:
        known = ", ".join(n for n, c in HUB_CORPORA.items() if c.streaming)
        raise ValueError(
            f"unknown pretraining source {source!r}: use {known}, a local file or a hub id"
        )
    names = ds.column_names
    if names is not None and column not in names:
        raise ValueError(
            f"column {column!r} not found in {source}; columns are: {', '.join(names)}"
        )
    ds = ds.select_columns([column])
    return ds.rename_column(column, "text") if column != "text" else ds


class PretrainStream:
    """Infinite (train) or finite (val/test) stream of stage-1 batches with a resumable position.

    Args:
        tokenizer: a :class:`~yan.tokenizer.YanTokenizer`.
        max_len: tokens per piece (2048 in the paper).
        batch_size: pieces per batch.
        sources: hub corpus names, hub ids or local files; default FineWiki + FineWeb-Edu.
        weights: mixing probabilities, one per source (default: 0.75 / 0.25 for the
            paper's FineWiki + FineWeb-Edu, otherwise uniform).
        split: ``"train"``, ``"val"`` or ``"test"`` (by document hash).
        seed: mixing (and shuffling) seed.
        shuffle_buffer: ``datasets`` shuffle buffer for train (0 = stream order, exact resume).
        max_docs: stop after this many documents (default: train never stops, val/test read
            their whole split once).
        text_column: column holding the text, when it is not ``text``.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_len: int,
        batch_size: int,
        sources: Sequence[str] = DEFAULT_SOURCES,
        weights: Sequence[float] | None = None,
        split: str = "train",
        seed: int = 0,
        shuffle_buffer: int = 10_000,
        max_docs: int | None = None,
        text_column: str | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if max_len < 1 or batch_size < 1:
            raise ValueError(f"max_len and batch_size must be >= 1, got {max_len}, {batch_size}")
        if not sources:
            raise ValueError("PretrainStream: no sources")
        if weights is None and tuple(sources) == DEFAULT_SOURCES:
            weights = DEFAULT_WEIGHTS
        if weights is not None and (len(weights) != len(sources) or min(weights) < 0):
            raise ValueError(
                f"weights must be {len(sources)} non-negative numbers (one per source), "
                f"got {weights}"
            )
        self.tokenizer, self.max_len, self.batch_size = tokenizer, max_len, batch_size
        self.split, self.seed, self.max_docs = split, seed, max_docs
        self.infinite = split == "train" and max_docs is None
        parts = [_open_source(s, text_column) for s in sources]
        parts = [p.filter(lambda ex, s=split: hash_split(ex["text"]) == s) for p in parts]
        if len(parts) == 1:
            ds = parts[0]
        else:
            datasets = _datasets()
            probs = None
            if weights is not None:
                total = float(sum(weights))
                probs = [w / total for w in weights]
            ds = datasets.interleave_datasets(
                parts, probabilities=probs, seed=seed, stopping_strategy="all_exhausted"
            )
        if split == "train" and shuffle_buffer > 0:
            ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
        self._ds = ds
        self._pending: list[list[int]] = []
        self._ds_state: dict[str, Any] | None = None
        self.epoch = 0
        self.docs = 0

    def _pieces(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer.encode_batch(texts)
        return [p for seq in ids for p in chunk(seq, self.max_len)]

    def _batch(self) -> Seq2SeqBatch:
        take, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        return collate([Example([], p) for p in take], self.tokenizer.pad_id)

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        while True:
            self._ds.set_epoch(self.epoch)
            if self._ds_state is not None:
                self._ds.load_state_dict(self._ds_state)
            group: list[str] = []
            for row in self._ds:
                if self.max_docs is not None and self.docs >= self.max_docs:
                    break
                self.docs += 1
                if row["text"]:
                    group.append(row["text"])
                if len(group) == _READ_GROUP:
                    self._pending.extend(self._pieces(group))
                    self._ds_state, group = self._ds.state_dict(), []
                    while len(self._pending) >= self.batch_size:
                        yield self._batch()
            self._pending.extend(self._pieces(group))
            self._ds_state = None
            while len(self._pending) >= self.batch_size:
                yield self._batch()
            if not self.infinite:
                if self._pending:
                    yield self._batch()
                self.docs = 0  # the next ``for`` loop is again one full pass
                return
            self.epoch += 1

    def state_dict(self) -> dict[str, Any]:
        """Stream position + pieces read but not yet batched (JSON/torch.save friendly)."""
        return {
            "dataset": self._ds_state,
            "pending": [list(p) for p in self._pending],
            "epoch": self.epoch,
            "docs": self.docs,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._ds_state = state["dataset"]
        self._pending = [list(p) for p in state["pending"]]
        self.epoch, self.docs = int(state["epoch"]), int(state["docs"])
