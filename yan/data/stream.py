"""Streamed stage-1 pretraining data: FineWiki 75% + FineWeb-Edu 25% (Sec. 5.1, App. B.1).

The pretraining corpora are too large to download, so documents are streamed with
``datasets`` (``streaming=True``), mixed by ``interleave_datasets`` with the given
probabilities (``--data-weights``), tokenised, cut into pieces of at most ``max_len`` tokens (as
the ``pretrain`` framing does) and batched with an empty source. Any source may be a local file
(``.txt``, ``.jsonl``, ``.json``, ``.csv``, ``.parquet``) instead of a hub corpus, which is how
it is tested offline.

Splits of a stream: a document goes to train / val / test by a hash of its text (90/5/5), so
the split is deterministic without ever listing the corpus.

Sharding: the mixed stream is cut into blocks of :data:`BLOCK_DOCS` documents dealt to the ranks
in turn (:mod:`yan.data.stream_position`); each rank tokenises only its own blocks, in
``torch.utils.data.DataLoader`` workers (``num_workers``) that prefetch while the model trains.
The split is by document, as ``datasets.distributed.split_dataset_by_node`` does for a stream
whose shard count the world size does not divide; that function is not used because it switches
to a split by file when the world size divides the shard count, which makes the order of the
documents depend on the number of ranks and rules out resuming on another number.

Resuming: :meth:`PretrainStream.state_dict` is this rank's position (blocks consumed, token
pieces read but not yet batched, and the ``datasets`` stream state at recent block starts);
:func:`~yan.data.stream_position.merge_positions` makes the ranks' positions one global
position, which :meth:`PretrainStream.load_state_dict` restores on any number of ranks (exactly
as an uninterrupted run on the same number). With ``shuffle_buffer > 0`` ``datasets`` refills
its shuffle buffer on resume, so the order after a restart differs from an uninterrupted run
(the data seen stays a fair sample); use ``shuffle_buffer=0`` for exact resumption.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from yan.batch import Seq2SeqBatch
from yan.data.batching import collate
from yan.data.hub import HUB_CORPORA, _datasets
from yan.data.records import JSONL_SUFFIXES, TEXT_SUFFIXES, _format_of
from yan.data.stream_position import BlockPlan, LocalPosition, position_for_rank
from yan.data.tasks import Example, chunk

DEFAULT_SOURCES = ("finewiki", "fineweb-edu")
DEFAULT_WEIGHTS = (0.75, 0.25)
BLOCK_DOCS = 64  # documents per block: the unit dealt to ranks and tokenised per backend call
_RECENT_STARTS = 256  # block starts a rank remembers (the global position needs one of them)


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


def check_weights(weights: Sequence[float] | None, sources: Sequence[str]) -> list[float] | None:
    """Mixing probabilities from ``weights`` (one per source, positive, any sum: they are
    normalised), or ``None`` (uniform) when no weights are given.

    Raises:
        ValueError: a count that differs from the sources', a weight that is not a finite
            number > 0.
    """
    if weights is None:
        return None
    weights = list(weights)
    if len(weights) != len(sources):
        raise ValueError(
            f"weights must be {len(sources)} numbers > 0, one per source "
            f"({', '.join(sources)}), got {len(weights)}: {weights}"
        )
    bad = [w for w in weights if not (isinstance(w, int | float) and math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(f"weights must be finite numbers > 0 (one per source), got {weights}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def parse_weights(text: str | None) -> list[float] | None:
    """``--data-weights 0.75,0.25`` as numbers (``None`` when not given)."""
    if text is None or not str(text).strip():
        return None
    try:
        return [float(p) for p in str(text).split(",")]
    except ValueError:
        raise ValueError(
            f"--data-weights must be comma-separated numbers, one per source, e.g. 0.75,0.25; "
            f"got {text!r}"
        ) from None


def _as_is(item: Any) -> Any:
    """The ``DataLoader`` collate of :class:`_BlockReader` items (already batched per block)."""
    return item


class _BlockReader(torch.utils.data.IterableDataset):
    """This rank's blocks of the global document stream, tokenised and cut into pieces.

    Every worker reads the (cheap) text stream from ``start`` and tokenises (the expensive
    part) only the blocks that are its rank's and, among those, its own: worker ``w`` of ``n``
    takes the rank's blocks ``taken + w``, ``taken + w + n``, ... ``DataLoader`` returns the
    workers' items in turn, so the main process receives the rank's blocks in order whatever
    the number of workers. An item is ``(block, flat ids, piece lengths, starts)``, ``starts``
    being the ``(block, epoch, dataset state)`` at the start of every block passed since the
    worker's previous item: the places a resumed stream may start reading from.
    """

    def __init__(self, stream: PretrainStream, pos: LocalPosition) -> None:
        super().__init__()
        self.ds, self.tokenizer, self.max_len = stream._ds, stream.tokenizer, stream.max_len
        self.infinite, self.max_docs = stream.infinite, stream.max_docs
        self.plan, self.rank, self.taken, self.start = pos.plan, pos.rank, pos.taken, pos.start

    def _mine(self, block: int, worker: int, workers: int) -> bool:
        owner = self.plan.owner(block)
        if owner is None or owner[0] != self.rank or owner[1] < self.taken:
            return False
        return (owner[1] - self.taken) % workers == worker

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, list[tuple]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        block, epoch, state = self.start
        passed: list[tuple[int, int, Any]] = []
        while True:
            self.ds.set_epoch(epoch)
            if state is not None:
                self.ds.load_state_dict(state)
            docs = 0
            # ``iter`` (not ``__iter__``): inside a DataLoader worker ``datasets`` would
            # otherwise shard the stream by worker itself, which this reader does by block
            for rows in self.ds.iter(batch_size=BLOCK_DOCS):
                texts = rows["text"]
                if self.max_docs is not None:
                    texts = texts[: self.max_docs - docs]
                docs += len(texts)
                mine = self._mine(block, worker, workers)
                block += 1
                passed.append((block, epoch, self.ds.state_dict()))
                if mine:
                    ids = self.tokenizer.encode_batch([t for t in texts if t])
                    pieces = [p for seq in ids for p in chunk(seq, self.max_len)]
                    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
                    flat = np.fromiter(
                        (i for p in pieces for i in p), dtype=np.int32, count=int(lengths.sum())
                    )
                    yield block - 1, flat, lengths, passed
                    passed = []
                if self.max_docs is not None and docs >= self.max_docs:
                    break
            if not self.infinite:
                return
            epoch, state = epoch + 1, None


class PretrainStream:
    """Infinite (train) or finite (val/test) stream of stage-1 batches with a resumable position;
    rank ``rank`` of ``world_size`` reads and tokenises only its share of the documents.

    Args:
        tokenizer: a :class:`~yan.tokenizer.YanTokenizer`.
        max_len: tokens per piece (2048 in the paper).
        batch_size: pieces per batch.
        sources: hub corpus names, hub ids or local files; default FineWiki + FineWeb-Edu.
        weights: mixing weights, one per source, > 0, normalised to probabilities (default:
            0.75 / 0.25 for the paper's FineWiki + FineWeb-Edu, otherwise uniform).
        split: ``"train"``, ``"val"`` or ``"test"`` (by document hash).
        seed: mixing (and shuffling) seed.
        shuffle_buffer: ``datasets`` shuffle buffer for train (0 = stream order, exact resume).
        max_docs: stop after this many documents (default: train never stops, val/test read
            their whole split once).
        text_column: column holding the text, when it is not ``text``.
        rank, world_size: this process's share (every ``world_size``-th block of documents).
        num_workers: ``DataLoader`` worker processes that tokenise (0: in this process).
        prefetch: blocks each worker prepares ahead (with ``num_workers > 0``).
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
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        prefetch: int = 2,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        if max_len < 1 or batch_size < 1:
            raise ValueError(f"max_len and batch_size must be >= 1, got {max_len}, {batch_size}")
        if not sources:
            raise ValueError("PretrainStream: no sources")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"PretrainStream: need 0 <= rank < world_size, got {rank}, {world_size}"
            )
        if num_workers < 0 or prefetch < 1:
            raise ValueError(
                f"num_workers must be >= 0 and prefetch >= 1, got {num_workers}, {prefetch}"
            )
        if weights is None and tuple(sources) == DEFAULT_SOURCES:
            weights = DEFAULT_WEIGHTS
        self.probabilities = check_weights(weights, sources)
        self.tokenizer, self.max_len, self.batch_size = tokenizer, max_len, batch_size
        self.split, self.seed, self.max_docs = split, seed, max_docs
        self.rank, self.world_size = rank, world_size
        self.num_workers, self.prefetch = num_workers, prefetch
        self.infinite = split == "train" and max_docs is None
        parts = [_open_source(s, text_column) for s in sources]
        parts = [p.filter(lambda ex, s=split: hash_split(ex["text"]) == s) for p in parts]
        if len(parts) == 1:
            ds = parts[0]
        else:
            ds = _datasets().interleave_datasets(
                parts,
                probabilities=self.probabilities,
                seed=seed,
                stopping_strategy="all_exhausted",
            )
        if split == "train" and shuffle_buffer > 0:
            ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
        self._ds = ds
        self._pos = self._fresh_position()
        self._starts: deque[tuple[int, int, Any]] = deque(maxlen=_RECENT_STARTS)

    def _fresh_position(self) -> LocalPosition:
        return LocalPosition(BlockPlan(world_size=self.world_size), self.rank)

    def _loader(self) -> torch.utils.data.DataLoader:
        extra = {"prefetch_factor": self.prefetch} if self.num_workers > 0 else {}
        return torch.utils.data.DataLoader(
            _BlockReader(self, self._pos),
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_as_is,
            **extra,
        )

    def _batch(self) -> Seq2SeqBatch:
        pos = self._pos
        take, pos.pending = pos.pending[: self.batch_size], pos.pending[self.batch_size :]
        pos.batches += 1
        return collate([Example([], p) for p in take], self.tokenizer.pad_id)

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        pos = self._pos
        while len(pos.pending) >= self.batch_size:  # pieces restored with the position first
            yield self._batch()
        for _block, flat, lengths, passed in self._loader():
            pos.taken += 1
            self._starts.extend(passed)
            bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
            values = flat.tolist()
            pos.pending.extend(values[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
            while len(pos.pending) >= self.batch_size:
                yield self._batch()
        if self.infinite:  # pragma: no cover - an infinite stream does not end
            raise RuntimeError("the training stream ended")
        if pos.pending:
            yield self._batch()
        # the next ``for`` loop is again one full pass
        self._pos, self._starts = self._fresh_position(), deque(maxlen=_RECENT_STARTS)

    def state_dict(self) -> dict[str, Any]:
        """This rank's position (JSON/torch.save friendly); the ranks' positions together make
        the global one (:func:`~yan.data.stream_position.merge_positions`)."""
        return self._pos.to_dict(list(self._starts))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a global position (or the ``state_dict`` of a one-rank stream),
        whatever the number of ranks it was saved with."""
        self._pos = position_for_rank(dict(state), self.rank, self.world_size)
        self._starts = deque(maxlen=_RECENT_STARTS)
