"""yan.data.cache / yan.data.store: prepared splits memory-mapped, read on access, rebuilt when
damaged, and batched exactly as the list path batches them (the published runs depend on it)."""

from __future__ import annotations

import pickle
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from yan import data
from yan.data import cache
from yan.data import pipeline as pipeline_mod
from yan.data.store import ExampleStore, map_npz, pack
from yan.data.tasks import Example
from yan.distributed import DistEnv, shard
from yan.tokenizer import get_tokenizer

PREP = dict(max_len=96, seed=1)


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def lists(tok):
    """lee-news infill splits as plain lists (no cache: the path of the previous layout)."""
    return data.prepare("lee-news", "infill", tok, use_cache=False, **PREP)


@pytest.fixture(scope="module")
def stores(tok, cache_dir):
    return data.prepare("lee-news", "infill", tok, cache_dir=cache_dir, **PREP)


def _cache_file(cache_dir: Path) -> Path:
    (path,) = (cache_dir / "prepared").glob("infill-*.npz")
    return path


def _env(rank: int, world: int) -> DistEnv:
    return DistEnv(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def _batches(examples, tok, n: int, **kw) -> tuple[list, data.BatchIterator]:
    it = data.BatchIterator(
        examples,
        16,
        tok.pad_id,
        seed=7,
        bucket=True,
        bucket_window=3,
        transform=data.InfillRemask(tok.mask_id),
        **kw,
    )
    return list(islice(iter(it), n)), it


def _same(a, b) -> bool:
    return all(
        torch.equal(x, y)
        for p, q in zip(a, b, strict=True)
        for x, y in zip(
            (p.src, p.src_mask, p.tgt, p.tgt_mask), (q.src, q.src_mask, q.tgt, q.tgt_mask)
        )
    )


# ---- bit-identical batches --------------------------------------------------------------------
def test_prepare_returns_memory_mapped_stores_equal_to_the_lists(lists, stores):
    assert all(isinstance(stores[s], ExampleStore) for s in data.SPLITS)
    assert all(isinstance(lists[s], list) for s in data.SPLITS)
    for s in data.SPLITS:
        assert stores[s] == lists[s] and list(stores[s]) == lists[s]
    ex = stores["train"][3]
    assert type(ex.src_ids) is list and all(type(i) is int for i in ex.tgt_ids)


@pytest.mark.parametrize("world", [1, 3])
def test_store_batches_are_bit_identical_to_the_list_path(lists, stores, tok, world):
    """Same seed, three epochs, length bucketing and re-drawn infilling masks: every rank's
    batches from the memory-mapped shard equal those of the list shard, and so do resumes."""
    for rank in range(world):
        old, mine = (
            shard(lists["train"], _env(rank, world)),
            shard(stores["train"], _env(rank, world)),
        )
        assert isinstance(mine, ExampleStore) and len(mine) == len(old)
        n = 3 * -(-len(old) // 16)
        want, it_old = _batches(old, tok, n)
        got, it_new = _batches(mine, tok, n)
        assert it_old.plan(2) and all(
            np.array_equal(a, b) for a, b in zip(it_old.plan(2), it_new.plan(2), strict=True)
        )
        assert _same(want, got)
        resumed, it = _batches(mine, tok, 0)
        it.load_state_dict(it_old.state_dict() | {"epoch": 1, "batch": 5})
        assert _same(list(islice(iter(it), 4)), want[n // 3 + 5 : n // 3 + 9])


def test_store_truncation_matches_the_list_path(lists, stores, tok):
    with pytest.warns(UserWarning, match="truncated") as old_warn:
        want, _ = _batches(lists["train"], tok, 20, max_len=40)
    with pytest.warns(UserWarning, match="truncated") as new_warn:
        got, _ = _batches(stores["train"], tok, 20, max_len=40)
    assert _same(want, got) and str(old_warn[0].message) == str(new_warn[0].message)
    it = data.BatchIterator(stores["train"], 4, tok.pad_id, max_len=96)
    assert it.examples is stores["train"]  # nothing to cut: the store is kept


# ---- memory-mapped, read on access ------------------------------------------------------------
def test_store_is_a_read_only_memory_map(stores, cache_dir):
    store = stores["train"]
    for name, arr in store.arrays.items():
        assert isinstance(arr, np.memmap), name
        assert not arr.flags.writeable, name
        assert Path(arr.filename) == _cache_file(cache_dir)
    assert store.arrays["src"].dtype == np.int32 and store.arrays["tgt_off"].dtype == np.int64
    view = store[1::4]
    assert view.arrays is store.arrays and np.array_equal(view.rows, np.arange(1, len(store), 4))


def test_a_memory_mapped_store_pickles_as_its_file(stores, lists):
    view = stores["train"][2::5]
    blob = pickle.dumps(view)
    assert len(blob) < 4096 < view.arrays["tgt"].nbytes  # the file's name, not its tokens
    again = pickle.loads(blob)
    assert isinstance(again.arrays["tgt"], np.memmap) and again == lists["train"][2::5]
    plain = ExampleStore(pack(lists["val"]))
    assert pickle.loads(pickle.dumps(plain)) == lists["val"]


def test_a_rank_reads_only_its_own_examples(stores, tok, monkeypatch):
    read: list[int] = []
    build = ExampleStore._example
    monkeypatch.setattr(
        ExampleStore, "_example", lambda self, row: read.append(row) or build(self, row)
    )
    mine = shard(stores["train"], _env(1, 3))
    assert not read  # sharding, lengths and planning read no example
    it = data.BatchIterator(mine, 16, tok.pad_id, seed=7, transform=data.InfillRemask(tok.mask_id))
    list(islice(iter(it), len(it)))
    assert sorted(read) == list(range(1, len(stores["train"]), 3))


def test_store_sequence_behaviour(lists):
    examples = lists["val"]
    store = ExampleStore(pack(examples))
    assert len(store) == len(examples) and store[-1] == examples[-1]
    assert store[2:9:3] == examples[2:9:3] and store[::-1] == examples[::-1]
    assert store.take([4, 0, -1]) == [examples[4], examples[0], examples[-1]]
    assert store[5:][1:3] == examples[5:][1:3]  # a view of a view
    assert np.array_equal(store.lengths(), [len(e.src_ids) + len(e.tgt_ids) for e in examples])
    with pytest.raises(IndexError, match="out of range"):
        store[len(examples)]
    with pytest.raises(IndexError, match="out of range"):
        store.take([len(examples)])
    empty = ExampleStore(pack([]))
    assert not empty and list(empty) == [] and empty == [] and store != examples[:-1]
    meta = [Example([], [5, 6], {"doc": "é", "masked": [1]})]
    assert ExampleStore(pack(meta)) == meta  # metadata round-trips through JSON


# ---- damaged or old cache files are rebuilt -----------------------------------------------------
def _old_layout(path: Path, examples: list[Example]) -> None:
    """The layout before memory-mapping: no 'format' member, one JSON of every split's metadata."""
    arrays = {f"train.{k}": v for k, v in pack(examples).items() if not k.startswith("meta")}
    arrays["meta"] = np.frombuffer(b'{"train": []}', dtype=np.uint8)
    np.savez(path, **arrays)


def _damage(path: Path, how: str, examples: list[Example]) -> None:
    blob = path.read_bytes()
    if how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "tail-cut":
        path.write_bytes(blob[:-10])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"not a zip file at all" * 100)
    elif how == "compressed":
        np.savez_compressed(path.with_suffix(".tmp.npz"), **map_npz(path))
        path.with_suffix(".tmp.npz").replace(path)
    elif how == "bad-offsets":
        arrays = dict(map_npz(path))
        arrays["train.tgt_off"] = np.asarray(arrays["train.tgt_off"])[::-1].copy()
        np.savez(path.with_suffix(".tmp.npz"), **arrays)
        path.with_suffix(".tmp.npz").replace(path)
    elif how == "old-layout":
        _old_layout(path, examples)


@pytest.mark.parametrize(
    "how", ["truncated", "tail-cut", "empty", "garbage", "compressed", "bad-offsets", "old-layout"]
)
def test_damaged_cache_file_is_rebuilt(tok, lists, tmp_path, how):
    first = data.prepare("lee-news", "infill", tok, cache_dir=tmp_path, **PREP)
    path = _cache_file(tmp_path)
    del first  # (its map stays valid on POSIX even when the file is replaced)
    _damage(path, how, lists["train"])
    assert cache.load_splits(path) is None
    again = data.prepare("lee-news", "infill", tok, cache_dir=tmp_path, **PREP)
    assert all(again[s] == lists[s] for s in data.SPLITS)
    assert cache.load_splits(path) is not None  # written again, whole


def test_cache_key_changed_with_the_layout(tok, tmp_path, monkeypatch):
    """Files of the previous layout live under another key: they are never opened."""
    monkeypatch.setattr(pipeline_mod, "PREPARE_VERSION", 2)
    data.prepare("lee-news", "infill", tok, cache_dir=tmp_path, **PREP)
    monkeypatch.undo()
    data.prepare("lee-news", "infill", tok, cache_dir=tmp_path, **PREP)
    assert len(list((tmp_path / "prepared").glob("infill-*.npz"))) == 2
