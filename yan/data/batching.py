"""Examples -> right-padded :class:`~yan.batch.Seq2SeqBatch` batches, resumable by position.

:class:`BatchIterator` plans each epoch from ``(seed, epoch)`` alone: a seeded permutation, then
(optionally) length bucketing inside windows of ``bucket_window`` batches, so that batches hold
sequences of similar length (less padding) while staying random. Because the plan is a pure
function of the seed and the epoch, the position ``(epoch, batch)`` is the whole state:
:meth:`BatchIterator.state_dict` / :meth:`BatchIterator.load_state_dict` save and restore it,
and a restored iterator yields exactly the batch the original would have yielded next.

The examples may be a list or a memory-mapped :class:`~yan.data.store.ExampleStore` (what
:func:`yan.data.prepare` returns from its cache): a store is kept as it is, its lengths come from
its offsets, and an example is read only when a batch that holds it is built, so an iterator
over a rank's shard reads that shard's examples only. Both give the same batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from yan.batch import Seq2SeqBatch
from yan.data.store import ExampleStore
from yan.data.tasks import Example
from yan.tokenizer import pad_batch

Transform = Callable[[Example, np.random.Generator], Example]


def collate(examples: Sequence[Example], pad_id: int) -> Seq2SeqBatch:
    """Right-pad sources and targets of ``examples`` into one batch (empty sources allowed)."""
    src, src_mask = pad_batch([e.src_ids for e in examples], pad_id)
    tgt, tgt_mask = pad_batch([e.tgt_ids for e in examples], pad_id)
    return Seq2SeqBatch(src, src_mask, tgt, tgt_mask)


def _truncate(examples: Sequence[Example], max_len: int, strict: bool) -> Sequence[Example]:
    if isinstance(examples, ExampleStore):
        sizes = np.maximum(examples.side_lengths("src"), examples.side_lengths("tgt"))
        if not len(sizes) or int(sizes.max()) <= max_len:
            return examples  # nothing to cut: keep the store (and its lazy reads)
        examples = list(examples)
    out, cut, longest = [], 0, 0
    for n, ex in enumerate(examples):
        length = max(len(ex.src_ids), len(ex.tgt_ids))
        if length <= max_len:
            out.append(ex)
            continue
        if strict:
            raise ValueError(
                f"example {n} has {length} tokens, more than max_len={max_len} (strict=True)"
            )
        cut, longest = cut + 1, max(longest, length)
        out.append(replace(ex, src_ids=ex.src_ids[:max_len], tgt_ids=ex.tgt_ids[:max_len]))
    if cut:
        warnings.warn(
            f"{cut} of {len(examples)} examples were longer than max_len={max_len} tokens "
            f"(longest {longest}) and were truncated",
            stacklevel=3,
        )
    return out


class BatchIterator:
    """Batches of :class:`Example` as :class:`Seq2SeqBatch`, with a resumable position.

    Args:
        examples: the examples of one split (a list, or a memory-mapped
            :class:`~yan.data.store.ExampleStore`, kept as it is and read batch by batch).
        batch_size: examples per batch.
        pad_id: the tokenizer's ``pad_id`` (right padding).
        shuffle: new seeded order every epoch (training); ``False`` keeps the given order.
        seed: seeds the order, the bucketing and the per-example ``transform``.
        infinite: loop over epochs forever (training); ``False`` stops after the current epoch
            (evaluation: each ``for`` loop is then one full pass).
        bucket: group examples of similar length inside windows of ``bucket_window`` batches.
        drop_last: drop a final smaller batch of each epoch.
        max_len: truncate longer examples (with one warning), or raise if ``strict``.
        transform: ``f(example, rng) -> example`` applied when a batch is built, with
            ``rng`` seeded by ``(seed, epoch, example index)`` (e.g. :class:`InfillRemask`).

    Example:
        >>> it = BatchIterator(examples, batch_size=16, pad_id=tok.pad_id, seed=0)
        >>> batch = next(iter(it))
        >>> state = it.state_dict()          # store with the checkpoint
        >>> it2 = BatchIterator(examples, 16, tok.pad_id, seed=0)
        >>> it2.load_state_dict(state)       # next(iter(it2)) == the next batch of it
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        pad_id: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        infinite: bool = True,
        bucket: bool = True,
        bucket_window: int = 50,
        drop_last: bool = False,
        max_len: int | None = None,
        strict: bool = False,
        transform: Transform | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(examples) == 0:
            raise ValueError("BatchIterator: no examples (empty split)")
        if drop_last and len(examples) < batch_size:
            raise ValueError(
                f"BatchIterator: drop_last with {len(examples)} examples < batch_size="
                f"{batch_size} leaves no batch"
            )
        if max_len is not None:
            examples = _truncate(examples, max_len, strict)
        self.examples: Sequence[Example]
        self.batch_size, self.pad_id = batch_size, pad_id
        self.shuffle, self.seed, self.infinite = shuffle, seed, infinite
        self.bucket, self.bucket_window, self.drop_last = bucket, bucket_window, drop_last
        self.transform = transform
        if isinstance(examples, ExampleStore):  # lengths from the offsets: no token is read
            self.examples, self._lengths = examples, examples.lengths().astype(np.int64)
        else:
            self.examples = list(examples)
            self._lengths = np.array(
                [len(e.src_ids) + len(e.tgt_ids) for e in self.examples], dtype=np.int64
            )
        self.epoch, self.batch = 0, 0
        self._plan_cache: tuple[int, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.examples)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Index arrays of every batch of ``epoch`` (a pure function of seed and epoch)."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        n, bs = len(self.examples), self.batch_size
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches: list[np.ndarray] = []
        window = bs * self.bucket_window if self.bucket else n
        for start in range(0, n, window):
            idx = order[start : start + window]
            if self.bucket:  # stable sort keeps the seeded order among equal lengths
                idx = idx[np.argsort(self._lengths[idx], kind="stable")]
            chunk = [idx[i : i + bs] for i in range(0, len(idx), bs)]
            if self.bucket and self.shuffle:
                chunk = [chunk[i] for i in rng.permutation(len(chunk))]
            batches.extend(chunk)
        if self.drop_last:
            batches = [b for b in batches if len(b) == bs]
        self._plan_cache = (epoch, batches)
        return batches

    def with_examples(self, examples: Sequence[Example], batch_size: int) -> BatchIterator:
        """A new iterator, at the start, with this one's settings (order, buckets, transform)
        over other examples and another batch size."""
        return BatchIterator(
            examples,
            batch_size,
            self.pad_id,
            shuffle=self.shuffle,
            seed=self.seed,
            infinite=self.infinite,
            bucket=self.bucket,
            bucket_window=self.bucket_window,
            drop_last=self.drop_last,
            transform=self.transform,
        )

    def make(self, idx: np.ndarray, epoch: int) -> Seq2SeqBatch:
        """The batch of the examples at ``idx`` in ``epoch`` (the transform is seeded by the
        epoch and each example's index): what the plan's batch ``idx`` yields."""
        items = [self.examples[i] for i in idx.tolist()]
        if self.transform is not None:
            items = [
                self.transform(ex, np.random.default_rng([self.seed, epoch, i]))
                for ex, i in zip(items, idx.tolist())
            ]
        return collate(items, self.pad_id)

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        while True:
            batches = self.plan(self.epoch)
            while self.batch < len(batches):
                idx = batches[self.batch]
                self.batch += 1  # advance before yielding: the state names the *next* batch
                yield self.make(idx, self.epoch)
            self.epoch, self.batch = self.epoch + 1, 0
            if not self.infinite:
                return

    # ---- resumable position ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where the iterator is: the next batch is ``batch`` of ``epoch``."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_examples": len(self.examples),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a position saved by :meth:`state_dict` (same examples, seed, batch size)."""
        for key in ("seed", "batch_size", "num_examples"):
            mine = self.state_dict()[key]
            if key in state and state[key] != mine:
                raise ValueError(
                    f"load_state_dict: saved {key}={state[key]} but this iterator has {mine}; "
                    "the data or the loader settings changed since the state was saved"
                )
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch <= len(self.plan(epoch)):
            raise ValueError(f"load_state_dict: invalid position epoch={epoch}, batch={batch}")
        self.epoch, self.batch = epoch, batch
