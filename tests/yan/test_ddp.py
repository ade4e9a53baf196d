"""Two-process DDP on CPU (gloo) through torchrun: ranks see different data, gradients are
averaged (identical weights afterwards) and only rank 0 writes the run folder; the in-memory
corpus is one plan of global batches, so the run trains on the global batches of a one-process
run and resumes on one process where it stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yan import train as yan_train

WORDS = "river mountain city music science history water light garden winter forest".split()


def write_corpus(path: Path, lines: int = 80) -> Path:
    rng = np.random.default_rng(1)
    rows = [f"Line {i}: " + " ".join(rng.choice(WORDS, size=10)) + "." for i in range(lines)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_two_process_gloo_ddp(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out, dump = tmp_path / "run", tmp_path / "ranks"
    env = {**os.environ, "YAN_DATA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "yan.train", "--preset", "tiny", "--data", str(corpus), "--stage", "1",
        "--max-steps", "3", "--batch-size", "4", "--warmup", "1", "--log-every", "1",
        "--eval-batches", "2", "--eval-every", "0", "--out", str(out), "--no-progress",
        "--device", "cpu", "--debug-rank-dump", str(dump),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    r0, r1 = (json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1))
    # gradients were all-reduced: the same weights on both ranks after 3 steps
    assert r0["checksum"] == r1["checksum"]
    # each rank trained on its own slice of each global batch
    assert r0["data_sum"] != r1["data_sum"]
    assert r0["local_loss"] != r1["local_loss"]
    # the logged loss is the mean over ranks, written once (rank 0 only)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    for i, row in enumerate(train):
        mean = (r0["local_loss"][i] + r1["local_loss"][i]) / 2
        assert abs(row["loss"] - mean) < 1e-5
    assert proc.stdout.count("yan train: stage 1") == 1  # one banner: only rank 0 prints
    state = json.loads(next((out / "checkpoints").glob("step-*/trainer_state.json")).read_text())
    assert state["run"]["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["ranks"][0]["rng"]["generator"] != state["ranks"][1]["rng"]["generator"]
    # one global data position, saved once (yan.data.global_plan)
    assert state["data"]["plan"] == "global" and (
        state["data"]["epoch"],
        state["data"]["batch"],
    ) == (0, 3)
    assert all("data" not in r for r in state["ranks"])

    # the same global batches as one process with the same seed and --batch-size ...
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    args = ["--preset", "tiny", "--data", str(corpus), "--stage", "1", "--batch-size", "4",
            "--warmup", "1", "--log-every", "1", "--eval-batches", "2", "--eval-every", "0",
            "--no-progress", "--device", "cpu", "--threads", "1"]  # fmt: skip
    one, one_dump = tmp_path / "one", tmp_path / "one-ranks"
    reference = [*args, "--tokenizer", str(out), "--max-steps", "5", "--out", str(one)]
    yan_train.main([*reference, "--debug-rank-dump", str(one_dump)])
    whole = json.loads((one_dump / "rank0.json").read_text())["data_sum"]
    assert [a + b for a, b in zip(r0["data_sum"], r1["data_sum"])] == whole[:3]
    # ... and resumed on one process (2 x micro 2 as 1 x accum 2 x micro 2), the next ones
    resumed_dump = tmp_path / "resumed-ranks"
    with pytest.warns(UserWarning, match="kept as 1 process x accum 2 x micro-batch 2 = 4"):
        res = yan_train.main(
            [*args, "--max-steps", "5", "--resume", "--out", str(out),
             "--debug-rank-dump", str(resumed_dump)]
        )  # fmt: skip
    assert res.step == 5
    assert json.loads((resumed_dump / "rank0.json").read_text())["data_sum"] == whole[3:]
