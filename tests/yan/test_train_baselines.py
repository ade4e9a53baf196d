"""``yan train --model gpt2|bart|masked-diffusion``: the baselines trained by YAN's trainer (DDP,
gradient accumulation, checkpoints with exact resume, metrics), their checkpoints loadable
with ``yan.baselines.load_baseline``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from yan import train as yan_train
from yan.baselines import load_baseline
from yan.loading import load_checkpoint
from yan.run_state import read_metrics
from yan.tokenizer import YanTokenizer

WORDS = "river mountain city music science history water light garden winter forest".split()
FAST = [
    "--batch-size",
    "4",
    "--warmup",
    "2",
    "--no-progress",
    "--device",
    "cpu",
    "--log-every",
    "1",
]


def _train_losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def four_examples(tmp_path_factory) -> Path:
    """Six lines: 4 train / 1 val / 1 test. Every training batch of 4 (one process) or of 2 per
    rank (two processes, each with its shard of 2) is the whole training split, so the global
    batch is the same; every target (the last word) has the same length, so the mean of the two
    ranks' token means is the token mean of the global batch."""
    rng = np.random.default_rng(3)
    rows = [" ".join(rng.choice(WORDS, size=int(n))) + " end" for n in (5, 7, 4, 8, 6, 5)]
    path = tmp_path_factory.mktemp("data") / "four.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_two_processes_reach_the_loss_of_one_with_the_same_global_batch(tmp_path, four_examples):
    env = {**os.environ, "YAN_DATA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = [
        "-m", "yan.train", "--model", "gpt2", "--preset", "tiny", "--data", str(four_examples),
        "--stage", "2", "--task", "last-word", "--max-steps", "4", "--lr", "3e-3",
        "--eval-every", "0", "--eval-batches", "1", *FAST,
    ]  # fmt: skip
    single = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    dump = tmp_path / "ranks"
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp += [*args, "--out", str(tmp_path / "two")]
    ddp += ["--debug-rank-dump", str(dump)]
    proc = subprocess.run(ddp, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["checksum"] == r1["checksum"]  # gradients averaged: the same weights on both ranks
    assert r0["local_loss"] != r1["local_loss"]  # each rank its own half of the batch
    one, two = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert len(one) == len(two) == 4 and one[-1] < one[0]
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-5)
    state = json.loads(
        next((tmp_path / "two").glob("checkpoints/step-*/trainer_state.json")).read_text()
    )
    assert state["run"]["model"] == "gpt2" and len(state["ranks"]) == 2


@pytest.mark.parametrize("name", ["masked-diffusion", "bart"])
def test_resume_continues_exactly_and_the_checkpoint_generates(
    tmp_path, line_corpus, isolated_data_cache, name
):
    """Stop at step 2, resume to 4: the losses and the weights of an uninterrupted run (masked
    diffusion draws its masks from the per-rank RNG the checkpoint saves)."""
    common = ["--model", name, "--preset", "tiny", "--data", str(line_corpus), "--stage", "2"]
    common += [*FAST, "--eval-every", "0", "--eval-batches", "2", "--save-every", "2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    yan_train.main([*common, "--max-steps", "4", "--out", str(straight)])
    yan_train.main([*common, "--max-steps", "2", "--out", str(split)])
    result = yan_train.main([*common, "--max-steps", "4", "--out", str(split), "--resume"])
    assert result.step == 4
    assert _train_losses(split) == _train_losses(straight)
    a, b = (load_file(str(d / "model.safetensors")) for d in (straight, split))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(split, baseline=name).kind == name  # what yan eval --baseline reads
    val = [r for r in read_metrics(split) if r["kind"] == "val"]
    assert val and np.isfinite(val[-1]["val_loss"])
    # the export folder and every checkpoint are baseline folders with the run's tokenizer
    for folder in (split, split / "checkpoints" / "step-00000004"):
        model = load_baseline(folder)
        tok = YanTokenizer.load(folder)
        assert model.config.name == name and model.config.vocab_size == tok.vocab_size
        assert model.config.keep_source  # infilling is an aligned task
        src = torch.tensor([tok.encode("river city")])
        ids = model.generate(src, torch.ones_like(src, dtype=torch.bool), 3)
        assert ids.shape == (1, 3) and int(ids.max()) < tok.vocab_size


def test_finetune_from_a_baseline_and_errors(tmp_path, line_corpus, isolated_data_cache):
    common = ["--preset", "tiny", "--data", str(line_corpus), *FAST, "--eval-every", "0"]
    pre = tmp_path / "pre"
    yan_train.main(
        ["--model", "gpt2", *common, "--stage", "2", "--max-steps", "2", "--out", str(pre)]
    )
    ft = tmp_path / "ft"
    ft_args = ["--stage", "finetune", "--task", "last-word", "--init", str(pre), "--max-steps", "2"]
    yan_train.main(["--model", "gpt2", *common, *ft_args, "--out", str(ft)])
    model = load_baseline(ft)
    assert not model.config.keep_source  # last-word generates its whole target
    before = load_baseline(pre)
    assert model.config.max_len == before.config.max_len
    with pytest.raises(SystemExit):  # a gpt2 checkpoint is no bart
        yan_train.main(["--model", "bart", *common, *ft_args, "--out", str(tmp_path / "x")])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stage", "1"], "stage 1 is YAN's autoencoder"),
        (["--stage", "2", "--set", "K=4"], "BaselineConfig fields"),
    ],
)
def test_bad_baseline_arguments_are_named(tmp_path, line_corpus, capsys, extra, message):
    argv = ["--model", "gpt2", "--preset", "tiny", "--data", str(line_corpus), *FAST]
    with pytest.raises(SystemExit):
        yan_train.main([*argv, *extra, "--out", str(tmp_path / "bad")])
    assert message in capsys.readouterr().err
