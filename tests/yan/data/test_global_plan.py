"""yan.data.global_plan: one plan of global batches for an in-memory corpus, each rank taking its
slice, so that the data position is global and a run resumes on any number of processes.

Several ranks are simulated in one process, one iterator per rank, as a DDP run would build
them; their micro-batches, concatenated in slot order (accumulation index, then rank), are the
global batches."""

from __future__ import annotations

from itertools import islice
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from yan.data import BatchIterator, make_loaders
from yan.data.global_plan import PLAN, GlobalBatches, slot_rows
from yan.data.store import ExampleStore, pack
from yan.data.tasks import Example
from yan.distributed import DistEnv, shard
from yan.elastic import restore_data, restore_rank_state

TOK = SimpleNamespace(pad_id=0, mask_id=1)
SEED = 5
N = 203  # not a multiple of the global batch: every epoch ends with a short batch


def _examples(n: int = N) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        tgt = rng.integers(2, 500, size=int(rng.integers(3, 40))).tolist()
        out.append(Example(list(tgt), tgt, {"i": i}))
    return out


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return _examples()


@pytest.fixture(scope="module")
def store(examples) -> ExampleStore:
    return ExampleStore(pack(examples))


def _env(rank: int, world: int) -> DistEnv:
    return DistEnv(rank=rank, world_size=world, local_rank=rank)


def _plan(split, batch_size: int) -> BatchIterator:
    """The trainer's plan: make_loaders' training iterator (length buckets, infilling remasks)."""
    return make_loaders({"train": split}, "infill", TOK, batch_size=batch_size, seed=SEED)["train"]


def _ranks(split, world: int, accum: int, micro: int) -> list[GlobalBatches]:
    b = world * accum * micro
    return [GlobalBatches(_plan(split, b), _env(r, world), accum) for r in range(world)]


def _rows(batch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(src, tgt) ids of each row without padding: what a global batch trains on."""
    out = []
    for s, sm, t, tm in zip(batch.src, batch.src_mask, batch.tgt, batch.tgt_mask):
        out.append((tuple(s[sm].tolist()), tuple(t[tm].tolist())))
    return out


def _global_batches(ranks: list[GlobalBatches], steps: int) -> list[list]:
    """``steps`` global batches: every rank's ``accum`` micro-batches, in slot order."""
    its = [iter(r) for r in ranks]
    accum = ranks[0].grad_accum
    out = []
    for _ in range(steps):
        micro = [[_rows(next(it)) for _ in range(accum)] for it in its]  # [rank][accum]
        out.append([row for a in range(accum) for rank in micro for row in rank[a]])
    return out


def _same(a, b) -> bool:
    keys = ("src", "src_mask", "tgt", "tgt_mask")
    return all(
        torch.equal(getattr(x, k), getattr(y, k)) for x, y in zip(a, b, strict=True) for k in keys
    )


# ---- one process, no accumulation: the published path, bit for bit ---------------------------
@pytest.mark.parametrize("kind", ["list", "store"])
def test_one_process_is_the_per_process_plan_bit_for_bit(examples, store, kind):
    """Same examples, order, padding and re-drawn infilling masks over three epochs (each with
    a short last batch) as the per-process iterator of earlier versions."""
    split = examples if kind == "list" else store
    old = make_loaders({"train": shard(split, _env(0, 1))}, "infill", TOK, batch_size=8, seed=SEED)[
        "train"
    ]
    (new,) = _ranks(split, 1, 1, 8)
    n = 3 * len(old)
    want, got = list(islice(iter(old), n)), list(islice(iter(new), n))
    assert _same(want, got)
    assert new.state_dict()["plan"] == PLAN  # but its position is a global one
    assert (new.epoch, new.batch) == (old.epoch, old.batch) == (2, len(old))


# ---- several ranks: the one global sequence ---------------------------------------------------
@pytest.mark.parametrize(("world", "accum", "micro"), [(2, 1, 4), (1, 2, 4), (4, 2, 1), (8, 1, 1)])
def test_ranks_together_train_on_the_one_process_global_batches(examples, world, accum, micro):
    steps = 2 * -(-N // 8) + 3  # past two epoch ends (short batches: 203 = 25 x 8 + 3)
    want = _global_batches(_ranks(examples, 1, 1, 8), steps)
    got = _global_batches(_ranks(examples, world, accum, micro), steps)
    for w, g in zip(want, got, strict=True):
        # a full global batch: the same rows in the same order; a short one (3 rows for 8
        # slots) is repeated cyclically so that no rank idles: the same rows, some twice
        assert g == w if len(w) == 8 else (set(g) == set(w) and len(g) >= len(w))


def test_slots_cut_a_global_batch_in_contiguous_parts():
    batch = np.arange(8)
    assert [slot_rows(batch, 4, s).tolist() for s in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [slot_rows(np.arange(5), 2, s).tolist() for s in range(2)] == [[0, 1, 2], [3, 4]]
    assert [slot_rows(np.arange(3), 4, s).tolist() for s in range(4)] == [[0], [1], [2], [0]]


def test_length_buckets_are_a_property_of_the_global_plan(examples):
    """Buckets of ``bucket_window`` global batches: every layout's global batch holds the same
    (similar-length) examples, so padding shrinks the same way on any number of processes."""
    one, four = _ranks(examples, 1, 1, 8)[0], _ranks(examples, 4, 1, 2)
    assert all(
        np.array_equal(a, b) for a, b in zip(one.plan.plan(1), four[2].plan.plan(1), strict=True)
    )
    lengths = one.plan._lengths
    spread = np.mean([np.ptp(lengths[b]) for b in one.plan.plan(1)])
    assert spread < np.ptp(lengths) / 3  # bucketed: far less spread than the whole split


def test_a_rank_reads_only_the_rows_of_its_slices(store, monkeypatch):
    read: list[int] = []
    build = ExampleStore._example
    monkeypatch.setattr(
        ExampleStore, "_example", lambda self, row: read.append(row) or build(self, row)
    )
    ranks = _ranks(store, 4, 2, 1)
    assert not read  # planning reads the offsets only
    mine = ranks[3]
    steps = len(mine.plan.plan(0))
    list(islice(iter(mine), steps * 2))  # one epoch: every global batch, 2 micro-batches each
    want = [int(i) for b in range(steps) for a in range(2) for i in mine.rows(0, b, a)]
    assert read == want
    # each full global batch of 8: slots 3 (micro-step 0) and 7 (micro-step 1) of rank 3 of 4
    for i, b in enumerate(mine.plan.plan(0)):
        if len(b) == 8:
            assert [int(mine.rows(0, i, a)[0]) for a in (0, 1)] == [int(b[3]), int(b[7])]


# ---- resume ----------------------------------------------------------------------------------
def _run(ranks: list[GlobalBatches], steps: int) -> list[dict]:
    _global_batches(ranks, steps)
    states = [r.state_dict() for r in ranks]
    merged = ranks[0].merge_state_dicts(states)
    assert merged is not None and merged["plan"] == PLAN and merged["micro"] == 0
    return states


@pytest.mark.parametrize(
    ("world", "accum", "micro"), [(2, 2, 2), (2, 1, 4), (1, 2, 4), (4, 1, 2), (1, 1, 8)]
)
def test_a_two_rank_position_resumes_on_any_layout_of_the_global_batch(store, world, accum, micro):
    k, more = 23, 10  # across the end of epoch 0
    two = _ranks(store, 2, 2, 2)
    states = _run(two, k)
    want = _global_batches(two, more)  # the uninterrupted run
    resumed = _ranks(store, world, accum, micro)
    for r in resumed:
        r.load_state_dict(two[0].merge_state_dicts(states))
    got = _global_batches(resumed, more)
    for w, g in zip(want, got, strict=True):
        assert g == w if len(w) == 8 else set(g) == set(w)


def test_the_trainer_restores_one_saved_position_on_another_world_size(store):
    two = _ranks(store, 2, 1, 4)
    states = _run(two, 7)
    want = _global_batches(two, 3)
    saved = {"step": 7, "data": two[0].merge_state_dicts(states), "ranks": [{}, {}]}
    (one,) = _ranks(store, 1, 2, 4)
    restore_rank_state(saved, _env(0, 1), torch.Generator(), one, SEED)
    assert _global_batches([one], 3) == want


def test_a_position_from_another_data_or_batch_is_refused(store, examples):
    (one,) = _ranks(store, 1, 1, 8)
    state = _run([one], 3)[0]
    (other,) = _ranks(store, 1, 1, 4)
    with pytest.raises(ValueError, match="saved batch_size=8 but this run has 4"):
        other.load_state_dict(state)
    (fewer,) = _ranks(examples[:-1], 1, 1, 8)
    with pytest.raises(ValueError, match="saved num_examples=203 but this run has 202"):
        fewer.load_state_dict(state)
    with pytest.raises(ValueError, match="only that layout can continue"):
        one.load_state_dict(state | {"micro": 1, "layout": [2, 1]})
    with pytest.raises(ValueError, match="not one of an in-memory corpus"):
        one.load_state_dict({"blocks": 3})


# ---- checkpoints of earlier versions: per-rank positions -------------------------------------
def _old_ranks(split, world: int, micro: int) -> list[BatchIterator]:
    return [
        make_loaders({"train": shard(split, _env(r, world))}, "infill", TOK, batch_size=micro,
                     seed=SEED)["train"]
        for r in range(world)
    ]  # fmt: skip


def test_an_old_per_rank_position_continues_on_the_same_world_size(store):
    old = _old_ranks(store, 2, 4)
    for it in old:
        list(islice(iter(it), 30))  # past the end of a shard's epoch (102 / 4 -> 26 batches)
    states = [it.state_dict() for it in old]
    want = [list(islice(iter(it), 5)) for it in old]
    new = _ranks(store, 2, 1, 4)
    for rank, source in enumerate(new):
        restore_data(source, states, _env(rank, 2))
        assert _same(list(islice(iter(source), 5)), want[rank])
        # it stays per rank: the next checkpoint saves it per rank again
        assert source.merge_state_dicts([s.state_dict() for s in new]) is None


@pytest.mark.parametrize("world", [1, 4])
def test_an_old_per_rank_position_is_refused_on_another_world_size(store, world):
    old = _old_ranks(store, 2, 4)
    for it in old:
        list(islice(iter(it), 3))
    states = [it.state_dict() for it in old]
    source = _ranks(store, world, 2 // world if world == 1 else 1, 8 // max(world, 2))[0]
    with pytest.raises(ValueError) as err:
        restore_data(source, states, _env(0, world))
    message = str(err.value)
    assert f"--resume on {world} processes: the checkpoint was written by 2" in message
    assert "its data position is per process" in message and "resume on 2 processes" in message


def test_an_old_one_process_position_is_the_global_one_and_moves(store):
    (old,) = _old_ranks(store, 1, 8)
    list(islice(iter(old), 30))
    state = old.state_dict()
    want = list(islice(iter(old), 6))
    # the same process count: continued bit for bit, and saved as a global position from now on
    (same,) = _ranks(store, 1, 1, 8)
    restore_data(same, [state], _env(0, 1))
    assert _same(list(islice(iter(same), 6)), want)
    assert same.merge_state_dicts([same.state_dict()]) is not None
    # two processes: the same global batches
    two = _ranks(store, 2, 1, 4)
    for rank, source in enumerate(two):
        restore_data(source, [state], _env(rank, 2))
    assert _global_batches(two, 6) == [_rows(b) for b in want]
    # with accumulation, an old one-process position (its own micro-batch plan) stays per rank
    (accum,) = _old_ranks(store, 1, 4)
    list(islice(iter(accum), 3))
    two = _ranks(store, 2, 1, 4)
    with pytest.raises(ValueError, match="its data position is per process"):
        restore_data(two[0], [accum.state_dict()], _env(0, 2))
    # ... and continues exactly on one process, through its own per-rank plan
    want = list(islice(iter(accum), 4))
    (again,) = _ranks(store, 1, 2, 4)
    restore_data(again, [accum.state_dict() | {"batch": 3}], _env(0, 1))
    assert _same(list(islice(iter(again), 4)), want)
