"""yan eval: a tiny trained checkpoint end to end (JSON, markdown, predictions), metadata
defaults, baseline checkpoints, and every bad input named in a clear error."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from yan import train as yan_train
from yan.baselines import build_baseline, save_baseline
from yan.data.tasks import Example
from yan.evaluate import main, masked_token_accuracy, read_run_info, score
from yan.model import YAN
from yan.tokenizer import YanTokenizer

WORDS = (
    "river mountain city music science history water light garden winter summer forest "
    "engine village market language story teacher ocean island bridge castle painter"
).split()


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        f"Item {i}: the " + " ".join(rng.choice(WORDS, size=int(rng.integers(8, 14)))) + "."
        for i in range(120)
    ]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, corpus) -> Path:
    """A tiny stage-2 (infilling) run of 3 steps, written by the trainer."""
    out = tmp_path_factory.mktemp("runs") / "s2"
    mp = pytest.MonkeyPatch()
    mp.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stage 2 without --init warns about it
            yan_train.main(
                [
                    "--preset", "tiny", "--data", str(corpus), "--stage", "2",
                    "--max-steps", "3", "--out", str(out), "--batch-size", "4",
                    "--warmup", "2", "--eval-batches", "1", "--no-progress",
                ]
            )  # fmt: skip
    finally:
        mp.undo()
    return out


def run_eval(*argv: str | Path) -> dict:
    return main([str(a) for a in argv])


def test_eval_writes_json_markdown_and_predictions(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    results = run_eval(
        "--task", "infill", "--checkpoint", checkpoint, "--steps", "1", "3",
        "--limit", "6", "--out", out, "--no-bertscore",
    )  # fmt: skip
    assert set(results) == {"yan T=1", "yan T=3"}
    for metrics in results.values():
        assert {"rouge1", "rouge2", "rougeL", "masked_acc", "tokens_per_s"} <= set(metrics)
        assert all(0 <= metrics[k] <= 100 for k in ("rouge1", "rougeL", "masked_acc"))
    saved = json.loads((out / "eval_infill.json").read_text())
    assert saved["results"] == results  # floats survive JSON exactly
    assert saved["meta"]["examples"] == 6 and saved["meta"]["trained"]["task"] == "infill"
    table = (out / "eval_infill.md").read_text()
    assert "| yan T=1 |" in table and "rougeL" in table
    rows = [
        json.loads(line) for line in (out / "predictions_infill.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 12 and {"source", "reference", "prediction", "run"} <= set(rows[0])
    assert "<|mask|>" in rows[0]["source"]
    assert "| yan T=3 |" in capsys.readouterr().out


def test_task_data_and_split_default_to_the_training_run(checkpoint, corpus, tmp_path):
    info = read_run_info(checkpoint)
    assert (info.task, info.stage, info.seed) == ("infill", "2", 0)
    assert Path(info.data) == corpus.resolve() and info.max_len == 64
    results = run_eval(
        "--checkpoint", checkpoint, "--limit", "2", "--out", tmp_path, "--no-bertscore"
    )
    assert list(results) == ["yan T=4"]  # the paper's default of 4 Euler steps


def test_eval_is_reproducible_for_a_seed(checkpoint, tmp_path):
    args = ("--checkpoint", checkpoint, "--limit", "4", "--no-bertscore", "--steps", "2")
    a = run_eval(*args, "--out", tmp_path / "a", "--seed", "5")
    b = run_eval(*args, "--out", tmp_path / "b", "--seed", "5")
    assert a["yan T=2"]["rougeL"] == b["yan T=2"]["rougeL"]


def test_a_model_saved_without_a_training_run_needs_task_and_data(checkpoint, corpus, tmp_path):
    tok = YanTokenizer.load(checkpoint)
    folder = YAN.from_preset("tiny", vocab_size=tok.vocab_size).save_pretrained(
        tmp_path / "plain", tokenizer=tok
    )
    with pytest.raises(SystemExit):
        run_eval("--task", "infill", "--checkpoint", folder, "--out", tmp_path)
    results = run_eval(
        "--task", "infill", "--checkpoint", folder, "--data", corpus, "--max-len", "16",
        "--limit", "3", "--out", tmp_path, "--no-bertscore",
    )  # fmt: skip
    assert "yan T=4" in results


def test_baseline_checkpoint(checkpoint, corpus, tmp_path):
    tok = YanTokenizer.load(checkpoint)
    torch.manual_seed(0)
    model = build_baseline(
        "masked-diffusion", "tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id,
        mask_id=tok.mask_id, max_len=64,
    )  # fmt: skip
    folder = save_baseline(model, tmp_path / "md")
    results = run_eval(
        "--task", "infill", "--baseline", "masked-diffusion", "--checkpoint", folder,
        "--tokenizer", checkpoint, "--data", corpus, "--max-len", "16", "--steps", "2", "64",
        "--limit", "3", "--out", tmp_path / "eval", "--no-bertscore",
    )  # fmt: skip
    # T above a target's length is clamped to one token per step
    assert set(results) == {"masked-diffusion T=2", "masked-diffusion T=64"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--task", "summarise"), "unknown --task 'summarise'"),
        (("--task", "qa"), "trained for task 'infill', not --task 'qa'"),
        (("--tokenizer", "gpt2"), "not the tokenizer saved with the checkpoint"),
        (("--split", "holdout"), "--split must be one of"),
        (("--steps", "0"), "--steps must be integers >= 1"),
        (("--limit", "0"), "--limit must be >= 1"),
        (("--max-len", "4096"), "exceeds the model's limit"),
        (("--baseline", "gpt2"), "is not a baseline checkpoint"),
    ],
)
def test_bad_input_exits_with_a_clear_message(checkpoint, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        run_eval("--checkpoint", checkpoint, "--out", tmp_path, "--no-bertscore", *extra)
    err = capsys.readouterr().err
    assert message in err, err


def test_missing_or_foreign_checkpoints(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_eval("--checkpoint", tmp_path / "nowhere", "--task", "infill")
    assert "--checkpoint folder not found" in capsys.readouterr().err
    stage1 = tmp_path / "s1"
    shutil.copytree(checkpoint, stage1)
    run_file = json.loads((stage1 / "run.json").read_text())
    (stage1 / "run.json").write_text(json.dumps({**run_file, "stage": "1", "task": None}))
    shutil.rmtree(stage1 / "checkpoints")
    with pytest.raises(SystemExit):
        run_eval("--checkpoint", stage1, "--task", "infill")
    assert "stage-1 autoencoder" in capsys.readouterr().err


def test_baseline_with_a_foreign_tokenizer_or_none(checkpoint, tmp_path, capsys):
    model = build_baseline("gpt2", "tiny", vocab_size=64, pad_id=62, mask_id=63, max_len=32)
    folder = save_baseline(model, tmp_path / "gpt2")
    base = ("--task", "infill", "--checkpoint", folder, "--data", "x.txt")
    with pytest.raises(SystemExit):
        run_eval(*base, "--baseline", "gpt2")
    assert "pass --tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_eval(*base, "--baseline", "gpt2", "--tokenizer", checkpoint)
    assert "do not belong together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_eval(*base, "--baseline", "bart", "--tokenizer", checkpoint)
    assert "holds a 'gpt2' model, not --baseline 'bart'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_eval(*base, "--baseline", "t5", "--tokenizer", checkpoint)
    assert "unknown --baseline 't5'" in capsys.readouterr().err


def test_score_refuses_count_mismatch():
    with pytest.raises(ValueError, match="differ in count: 1 vs 2"):
        score("qa", ["paris"], ["paris", "rome"], bertscore=False)
    assert score("classify", ["positive", "negative"], ["positive", "positive"])["accuracy"] == 50.0


def test_masked_token_accuracy_counts_only_masked_positions():
    mask = 99
    examples = [Example([1, mask, 3, mask], [1, 2, 3, 4]), Example([mask, 6], [5, 6])]
    generated = [[0, 2, 0, 7], [5, 0]]  # right at 2 of the 3 masks; visible positions wrong
    assert masked_token_accuracy(examples, generated, mask) == pytest.approx(200 / 3)
