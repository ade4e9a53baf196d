"""The training data path at scale: rank-sharded streams tokenised in DataLoader workers, a
global data position that resumes on another number of ranks, mixing weights, the memory-mapped
int32 cache, and a training step without host syncs between log steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from yan import train as yan_train
from yan import train_metrics
from yan.data import PretrainStream
from yan.data.stream import check_weights, parse_weights
from yan.data.stream_position import BlockPlan, merge_positions
from yan.run_state import read_metrics
from yan.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer("gpt2")


class RecordingTokenizer:
    """The tokenizer, remembering every text this rank tokenised."""

    def __init__(self, tok) -> None:
        self.tok, self.seen = tok, []
        self.pad_id = tok.pad_id

    def encode_batch(self, texts):
        self.seen.extend(texts)
        return self.tok.encode_batch(texts)


def write_docs(path: Path, n: int, word: str = "doc") -> Path:
    path.write_text("".join(json.dumps({"text": f"{word} {i} end"}) + "\n" for i in range(n)))
    return path


def doc_ids(tok, batches) -> list[str]:
    """The document of every row (one short document is one piece)."""
    return [tok.decode(row[mask].tolist()) for b in batches for row, mask in zip(b.tgt, b.tgt_mask)]


def stream(tok, corpus, rank=0, world=1, **kw) -> PretrainStream:
    kw = {"max_len": 32, "batch_size": 3, "shuffle_buffer": 0, "max_docs": 10_000, **kw}
    return PretrainStream(tok, sources=[str(corpus)], rank=rank, world_size=world, **kw)


# ---- sharding -------------------------------------------------------------------------------
def test_ranks_tokenise_disjoint_shares_that_cover_the_stream(tok, tmp_path):
    corpus = write_docs(tmp_path / "docs.jsonl", 500)
    whole = doc_ids(tok, stream(tok, corpus))
    assert len(whole) == len(set(whole)) > 400  # the train split, once
    seen, got = [], []
    for rank in range(2):
        rec = RecordingTokenizer(tok)
        got.append(doc_ids(tok, stream(rec, corpus, rank, 2)))
        seen.append(set(rec.seen))
        assert len(rec.seen) == len(seen[-1])  # each document tokenised once
    assert not seen[0] & seen[1]  # no rank tokenises another's rows
    assert seen[0] | seen[1] == set(whole)  # together they cover the stream
    assert sorted(got[0] + got[1]) == sorted(whole)
    assert abs(len(got[0]) - len(got[1])) <= 64  # near-equal shares (blocks of 64 documents)


def test_dataloader_workers_keep_the_order(tok, tmp_path):
    corpus = write_docs(tmp_path / "docs.jsonl", 400)
    alone = [b.tgt for b in stream(tok, corpus, 1, 2)]
    workers = [b.tgt for b in stream(tok, corpus, 1, 2, num_workers=2)]
    assert len(alone) == len(workers) and all(a.equal(b) for a, b in zip(alone, workers))


# ---- the global position --------------------------------------------------------------------
def test_block_plan_deals_round_robin_and_skips_done_blocks():
    plan = BlockPlan(base=4, done=(6, 9), world_size=2)
    blocks = [b for b in range(4, 14) if plan.owner(b) is not None]
    assert blocks == [4, 5, 7, 8, 10, 11, 12, 13]
    assert [plan.owner(b) for b in blocks[:4]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert all(plan.block_of(*plan.owner(b)) == b for b in blocks)
    assert plan.owner(3) is None and plan.owner(6) is None


def _read(streams, counts):
    """Each rank reads ``counts[rank]`` batches; returns the documents read and the iterators."""
    its = [iter(s) for s in streams]
    return [doc_ids_of(s, it, n) for s, it, n in zip(streams, its, counts)], its


def doc_ids_of(s, it, n):
    return doc_ids(s.tokenizer, [next(it) for _ in range(n)])


@pytest.mark.parametrize("new_world", [1, 3])
def test_resume_on_another_world_size_reads_every_document_once(tok, tmp_path, new_world):
    corpus = write_docs(tmp_path / "docs.jsonl", 600)
    whole = doc_ids(tok, stream(tok, corpus))
    old = [stream(tok, corpus, r, 2) for r in range(2)]
    # ranks at different places: rank 1 has consumed two blocks more than rank 0
    before, _ = _read(old, [25, 70])
    saved = json.loads(json.dumps(merge_positions([s.state_dict() for s in old])))
    assert saved["extra"] and saved["world_size"] == 2
    resumed = []
    for r in range(new_world):
        s = stream(tok, corpus, r, new_world)
        s.load_state_dict(saved)
        resumed.append(doc_ids(tok, s))
    read = Counter(d for part in before + resumed for d in part)
    assert read == Counter(whole)  # nothing skipped, nothing read twice


def test_resume_on_the_same_world_size_is_exact(tok, tmp_path):
    corpus = write_docs(tmp_path / "docs.jsonl", 600)
    old = [stream(tok, corpus, r, 2) for r in range(2)]
    _, its = _read(old, [25, 70])
    saved = json.loads(json.dumps(merge_positions([s.state_dict() for s in old])))
    expected = [doc_ids_of(s, it, 10) for s, it in zip(old, its)]
    for r in range(2):
        s = stream(tok, corpus, r, 2)
        s.load_state_dict(saved)
        assert doc_ids_of(s, iter(s), 10) == expected[r]


def test_an_old_position_is_refused_with_a_clear_error(tok, tmp_path):
    s = stream(tok, write_docs(tmp_path / "docs.jsonl", 10))
    with pytest.raises(ValueError, match="older version of yan"):
        s.load_state_dict({"dataset": None, "pending": [], "epoch": 0, "docs": 0})


# ---- mixing weights -------------------------------------------------------------------------
def test_data_weights_give_the_requested_mix_of_local_parquet(tok, tmp_path, monkeypatch):
    # datasets waits 5 s when a parquet stream is closed mid-way (apache/arrow#45214)
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    for name in ("wiki", "web"):
        rows = {"text": [f"{name} {i}" for i in range(1500)]}
        pd.DataFrame(rows).to_parquet(tmp_path / f"{name}.parquet")
    sources = [str(tmp_path / "wiki.parquet"), str(tmp_path / "web.parquet")]

    def share(weights) -> float:
        s = PretrainStream(
            tok, max_len=16, batch_size=50, sources=sources, weights=weights, shuffle_buffer=0
        )
        it = iter(s)
        docs = doc_ids(tok, [next(it) for _ in range(16)])
        it.close()
        return sum(d.startswith("wiki") for d in docs) / len(docs)

    assert abs(share([0.75, 0.25]) - 0.75) < 0.05
    assert abs(share([3, 1]) - 0.75) < 0.05  # normalised
    assert abs(share(None) - 0.5) < 0.05  # local files without weights: uniform


def test_data_weights_errors():
    assert check_weights([3, 1], ["a", "b"]) == [0.75, 0.25]
    assert parse_weights("0.75,0.25") == [0.75, 0.25] and parse_weights(None) is None
    with pytest.raises(ValueError, match="2 numbers > 0, one per source"):
        check_weights([1.0], ["a", "b"])
    with pytest.raises(ValueError, match="finite numbers > 0"):
        check_weights([1.0, 0.0], ["a", "b"])
    with pytest.raises(ValueError, match="finite numbers > 0"):
        check_weights([1.0, float("nan")], ["a", "b"])
    with pytest.raises(ValueError, match="comma-separated numbers"):
        parse_weights("0.75;0.25")


# ---- the training loop reads metrics only at log steps ---------------------------------------
READS = ("item", "tolist", "__float__", "__int__", "__bool__")


def tiny_run(out: Path, corpus: Path, log_every: int) -> list[dict]:
    yan_train.main(
        [
            "--preset", "tiny", "--data", str(corpus), "--stage", "1", "--max-steps", "6",
            "--batch-size", "4", "--warmup", "2", "--log-every", str(log_every),
            "--eval-every", "0", "--eval-batches", "1", "--save-every", "0", "--no-progress",
            "--out", str(out), "--device", "cpu", "--threads", "1",
        ]
    )  # fmt: skip
    return [r for r in read_metrics(out) if r["kind"] == "train"]


def test_training_steps_read_no_tensor_between_log_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    words = "river mountain city music science history water light garden".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(f"Line {i}: " + " ".join(rng.choice(words, 8)) + ".\n" for i in range(60))
    )
    every_step = tiny_run(tmp_path / "a", corpus, log_every=1)
    reads: list[str] = []
    in_step = [False]
    here = {Path(yan_train.__file__).resolve(), Path(train_metrics.__file__).resolve()}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **kw):
            caller = Path(sys._getframe(1).f_code.co_filename).resolve()
            if in_step[0] and caller in here:
                reads.append(f"{_name} at {caller.name}:{sys._getframe(1).f_lineno}")
            return _original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    step = yan_train.Trainer.train_step

    def watched(self, batches):
        in_step[0] = True
        try:
            return step(self, batches)
        finally:
            in_step[0] = False

    monkeypatch.setattr(yan_train.Trainer, "train_step", watched)
    sparse = tiny_run(tmp_path / "b", corpus, log_every=3)
    assert reads == []  # no tensor read (no device sync) inside a training step
    # the values logged at the log steps are those of the run that read them every step
    assert [r["step"] for r in sparse] == [3, 6]
    for row in sparse:
        same = every_step[row["step"] - 1]
        for key in ("loss", "ce", "mmd", "scale", "grad_norm", "tokens", "lr"):
            assert row[key] == pytest.approx(same[key], rel=1e-6), key


def test_data_path_flags_are_checked():
    from yan.train_args import TrainArgs, check_args

    with pytest.raises(ValueError, match="--data-weights must be comma-separated numbers"):
        check_args(TrainArgs(out="o", data="d", preset="tiny", data_weights="3:1"))
    with pytest.raises(ValueError, match="--num-workers must be >= 0"):
        check_args(TrainArgs(out="o", data="d", preset="tiny", num_workers=-1))


# Three torchrun launches of two processes with DataLoader workers: ~35 s, the slowest test of
# the suite, so it runs with `make test-all`; in-process tests here cover the same positions.
@pytest.mark.slow
def test_two_process_streamed_run_saves_one_global_position_and_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    words = "river mountain city music science history water light garden".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(f"Line {i}: " + " ".join(rng.choice(words, 8)) + ".\n" for i in range(400))
    )
    env = {**os.environ, "YAN_DATA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def run(out: Path, steps: int) -> None:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "yan.train", "--preset", "tiny", "--data", str(corpus), "--stream",
            "--tokenizer", "gpt2", "--stage", "1", "--max-steps", str(steps), "--batch-size", "4",
            "--warmup", "1", "--log-every", "1", "--eval-batches", "1", "--eval-every", "0",
            "--save-every", "3", "--out", str(out), "--no-progress", "--device", "cpu",
            "--num-workers", "1", "--resume", "--overwrite",
        ]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, f"torchrun exited {proc.returncode}:\n{proc.stderr[-3000:]}"

    run(tmp_path / "whole", 5)
    run(tmp_path / "cut", 3)
    state = json.loads((tmp_path / "cut/checkpoints/step-00000003/trainer_state.json").read_text())
    assert state["data"]["world_size"] == 2 and len(state["data"]["taken"]) == 2
    assert all("data" not in r for r in state["ranks"])  # one position, not one per rank
    run(tmp_path / "cut", 5)
    whole, cut = (
        [r["loss"] for r in read_metrics(tmp_path / d) if r["kind"] == "train"]
        for d in ("whole", "cut")
    )
    assert len(cut) == 5 and cut == pytest.approx(whole, rel=1e-6)


def test_a_resume_with_another_mix_is_refused():
    """Another --data-weights part-way would change the stream the run continues on."""
    from yan.run_state import check_resume

    saved = {"run": {"data": "a,b", "data_weights": "0.75,0.25"}}
    check_resume(saved, {"data": "a,b", "data_weights": "0.75,0.25"}, {}, {})
    with pytest.raises(ValueError, match="data_weights: checkpoint '0.75,0.25', now '0.5,0.5'"):
        check_resume(saved, {"data": "a,b", "data_weights": "0.5,0.5"}, {}, {})
