"""yan.elastic: a run resumes on another number of processes with the same global batch.

Unit tests of the layout rules, the data position and the reseeding, then the real thing: a
two-process gloo run under torchrun, stopped by a signal to one of its ranks, resumed on one
process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from yan import train as yan_train
from yan.distributed import DistEnv
from yan.elastic import (
    BatchLayout,
    batch_layout,
    reseed,
    restore_data,
    restore_rank_state,
    resume_seed,
)
from yan.preemption import PREEMPTED_EXIT_CODE
from yan.run_state import checkpoint_dirs, read_metrics, read_state
from yan.tokenizer import YanTokenizer

ROOT = Path(__file__).resolve().parents[2]


def run_of(world: int, accum: int, batch: int = 32, **extra: int) -> dict[str, int]:
    return {"world_size": world, "grad_accum": accum, "batch_size": batch, **extra}


# ---- the batch layout -----------------------------------------------------------------------
def test_a_new_run_splits_the_global_batch_as_asked():
    assert batch_layout(32, 8, 1) == (BatchLayout(8, 1, 4), None)
    with pytest.raises(ValueError, match="must be divisible by processes x --grad-accum = 3 x 1"):
        batch_layout(32, 3, 1)


def test_a_resume_on_fewer_processes_keeps_the_micro_batch():
    layout, note = batch_layout(32, 4, 1, run_of(8, 1))
    assert layout == BatchLayout(4, 2, 4) and layout.batch_size == 32
    assert note is not None and "kept as 4 processes x accum 2 x micro-batch 4 = 32" in note
    assert "reseeded from (seed, rank, step)" in note
    # on one process: 1 x accum 8 x 4; on more processes than before: less accumulation
    assert batch_layout(32, 1, 1, run_of(8, 1))[0] == BatchLayout(1, 8, 4)
    assert batch_layout(32, 8, 2, run_of(4, 2))[0] == BatchLayout(8, 1, 4)
    # the same layout again: nothing to say
    assert batch_layout(32, 8, 1, run_of(8, 1)) == (BatchLayout(8, 1, 4), None)
    # a later resume with the run's own --grad-accum keeps the micro-batch too
    assert batch_layout(32, 4, 1, run_of(4, 2, grad_accum_requested=1))[0] == BatchLayout(4, 2, 4)


def test_a_resume_falls_back_to_a_new_micro_batch_or_the_asked_accumulation():
    # 1 x micro 32 cannot keep micro 32 on 8 processes: accum stays, micro becomes 4
    assert batch_layout(32, 8, 1, run_of(1, 1))[0] == BatchLayout(8, 1, 4)
    # an explicitly different --grad-accum is honoured (to fit smaller GPUs)
    assert batch_layout(32, 4, 4, run_of(8, 1))[0] == BatchLayout(4, 4, 2)


def test_a_resume_that_cannot_keep_the_global_batch_is_refused():
    with pytest.raises(ValueError) as err:
        batch_layout(32, 3, 1, run_of(8, 1))
    message = str(err.value)
    assert "--resume on 3 processes: the checkpoint's global batch of 32" in message
    assert "8 processes x accum 1 x micro-batch 4 = 32" in message
    assert "(with --grad-accum 1: 1, 2, 4, 8, 16, 32)" in message
    with pytest.raises(ValueError) as err:
        batch_layout(16, 1, 1, run_of(2, 1, batch=4))
    message = str(err.value)
    assert "--batch-size 16 differs from the checkpoint's global batch of 4" in message
    assert "pass --batch-size 4 to continue this run" in message


# ---- the data position and the random streams -----------------------------------------------
class Source:
    """A stand-in data source that records what it was asked to load."""

    def __init__(self) -> None:
        self.loaded: list[dict] = []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("bad"):
            raise ValueError("saved batch_size=2 but this iterator has 4")
        self.loaded.append(state)


def test_the_data_position_moves_only_when_it_is_global():
    two = DistEnv(rank=1, world_size=2)
    source = Source()
    restore_data(source, [{"r": 0}, {"r": 1}], two)  # same world: each rank its own
    assert source.loaded == [{"r": 1}]
    one = DistEnv()
    restore_data(source, [{"pos": 7}, {"pos": 7}], one)  # the same on every rank: global
    assert source.loaded[-1] == {"pos": 7}
    with pytest.raises(ValueError, match="its data position is per process.*resume on 2 proc"):
        restore_data(source, [{"r": 0}, {"r": 1}], one)
    with pytest.raises(ValueError, match="does not fit this run's data .*saved batch_size=2"):
        restore_data(source, [{"bad": 1}, {"bad": 1}], one)
    with pytest.raises(ValueError, match="does not fit.*needs the checkpoint's --grad-accum"):
        restore_data(source, [{"bad": 1}], one)  # same world, another micro-batch

    class Resharding(Source):
        def load_resharded_state(self, states: list[dict]) -> None:
            self.loaded.append({"all": states})

    resharding = Resharding()
    restore_data(resharding, [{"r": 0}, {"r": 1}], one)
    assert resharding.loaded == [{"all": [{"r": 0}, {"r": 1}]}]


def test_on_another_world_size_every_rank_reseeds_from_seed_rank_and_step():
    assert len({resume_seed(0, r, 10) for r in range(8)}) == 8  # independent ranks
    assert resume_seed(0, 1, 10) != resume_seed(0, 1, 11) == resume_seed(0, 1, 11)
    draws = []
    for _ in range(2):
        gen = torch.Generator()
        saved = {"step": 10, "ranks": [{"data": {}, "rng": None}] * 2}
        restore_rank_state(saved, DistEnv(), gen, Source(), seed=3)
        draws.append((torch.rand(2, generator=gen), torch.rand(2), np.random.rand()))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert draws[0][2] == draws[1][2]  # the same resume draws the same noise
    gen = torch.Generator()
    reseed(resume_seed(3, 0, 10), gen)
    assert torch.equal(torch.rand(2, generator=gen), draws[0][0])


# ---- two processes, stopped by a signal to one rank, resumed on one ------------------------
WORDS = "river mountain city music science history water light garden winter forest".split()

# rank 1 alone gets SIGUSR1 while it trains step 3: both ranks must stop after step 3
SIGNAL_RANK_1 = """
    import os, signal, sys
    from yan import train
    real_step = train.Trainer.train_step

    def train_step(self, batches):
        if self.env.rank == 1 and self.step == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return real_step(self, batches)

    train.Trainer.train_step = train_step
    train.main(sys.argv[1:])
"""


def test_two_processes_stopped_by_a_signal_resume_on_one(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(3)
    rows = [f"Doc {i}: " + " ".join(rng.choice(WORDS, size=12)) + "." for i in range(300)]
    corpus = tmp_path / "stream.txt"
    corpus.write_text("\n".join(rows) + "\n")
    tok = tmp_path / "tok"
    YanTokenizer.train(rows, vocab_size=300).save(tok)
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--data", str(corpus), "--stream", "--tokenizer", str(tok),
              "--stage", "1", "--batch-size", "4", "--warmup", "1", "--log-every", "1",
              "--eval-every", "0", "--eval-batches", "1", "--save-every", "2", "--no-progress",
              "--device", "cpu", "--out", str(out)]  # fmt: skip
    script = tmp_path / "signal_rank_1.py"
    script.write_text(textwrap.dedent(SIGNAL_RANK_1))
    env = {**os.environ, "YAN_DATA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), *common, "--max-steps", "6"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]  # torchrun reports the early stop as a failure
    # torchrun's summary names the first rank to exit (it then stops the other)
    assert f"exitcode  : {PREEMPTED_EXIT_CODE}" in log, log[-3000:]
    assert "yan train: stopped by a signal to another rank at step 3" in proc.stdout
    # both ranks stopped together: one checkpoint of step 3, with both ranks' states
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000002", "step-00000003"]
    state = read_state(checkpoint_dirs(out)[-1])
    assert state["step"] == 3 and len(state["ranks"]) == 2
    assert state["run"]["world_size"] == 2 and state["run"]["grad_accum"] == 1
    assert [r["step"] for r in read_metrics(out) if r["kind"] == "train"] == [1, 2, 3]
    assert not (out / ".train.lock").exists()

    # one process: the same global batch of 4, as 1 x accum 2 x micro-batch 2
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="kept as 1 process x accum 2 x micro-batch 2 = 4"):
        res = yan_train.main([*common, "--max-steps", "5", "--resume", "--threads", "1"])
    assert res.step == 5
    assert "resumed at step 3" in capsys.readouterr().out
    rows = [r for r in read_metrics(out) if r["kind"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # continues from the right step
    assert rows[3]["tokens"] > rows[2]["tokens"]
    final = read_state(checkpoint_dirs(out)[-1])
    assert final["step"] == 5 and len(final["ranks"]) == 1
    run = final["run"]
    assert (run["world_size"], run["grad_accum"], run["batch_size"]) == (1, 2, 4)
    assert run["grad_accum_requested"] == 1
    assert json.loads((out / "run.json").read_text())["grad_accum"] == 2

    # another global batch is another run: refused, nothing changed
    with pytest.raises(SystemExit) as err:
        yan_train.main([*common, "--max-steps", "6", "--resume", "--batch-size", "8"])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--batch-size 8 differs from the checkpoint's global batch of 4" in message
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000004", "step-00000005"]
