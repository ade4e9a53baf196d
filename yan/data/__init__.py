"""Data for YAN: corpora, task framing (App. B.2), 90/5/5 splits and resumable batching.

Quick start (offline)::

    from yan.tokenizer import get_tokenizer
    from yan import data

    tok = get_tokenizer("gpt2")
    splits = data.prepare("wiki-mini", "infill", tok, max_len=128, seed=0)
    loaders = data.make_loaders(splits, "infill", tok, batch_size=16)
    for batch in loaders["val"]:  # Seq2SeqBatch, right-padded
        ...

``prepare`` returns each split as an :class:`ExampleStore` (a read-only sequence of
:class:`Example` over the memory-mapped cache file, built on access); ``list(split)`` gives
plain examples.

Offline corpora: ``wiki-mini``, ``movie-reviews``, ``chatterbot-qa``, ``lee-news``. Hub corpora
(online): ``finewiki``, ``wikipedia``, ``fineweb-edu`` (streamed, :class:`PretrainStream`),
``narrativeqa``, ``rocstories``, ``simplestories``, ``babi``, ``squad``, ``ag-news``,
``dbpedia``, ``sst2``. Any local ``.txt/.jsonl/.json/.csv/.tsv/.parquet`` file or folder works
in their place, with ``columns=`` mapping its columns to the canonical fields.

The data of a ``yan train`` run (its tokenizer, this rank's training batches, the validation
batches) is :mod:`yan.data.training`, imported on its own: it needs the distributed setup.
"""

from yan.data.batching import BatchIterator, collate
from yan.data.cache import cache_root
from yan.data.hub import HUB_CORPORA, HubCorpus
from yan.data.offline import OFFLINE_CORPORA, OfflineCorpus
from yan.data.pipeline import known_corpora, load_corpus, make_loaders, prepare
from yan.data.records import apply_columns, read_local
from yan.data.splits import SPLITS, split
from yan.data.store import ExampleStore
from yan.data.stream import PretrainStream, hash_split
from yan.data.tasks import (
    REQUIRED_FIELDS,
    TASKS,
    Example,
    InfillConfig,
    InfillRemask,
    build_examples,
    sample_mask_positions,
    split_last_word,
)

__all__ = [
    "HUB_CORPORA",
    "OFFLINE_CORPORA",
    "REQUIRED_FIELDS",
    "SPLITS",
    "TASKS",
    "BatchIterator",
    "Example",
    "ExampleStore",
    "HubCorpus",
    "InfillConfig",
    "InfillRemask",
    "OfflineCorpus",
    "PretrainStream",
    "apply_columns",
    "build_examples",
    "cache_root",
    "collate",
    "hash_split",
    "known_corpora",
    "load_corpus",
    "make_loaders",
    "prepare",
    "read_local",
    "sample_mask_positions",
    "split",
    "split_last_word",
]
