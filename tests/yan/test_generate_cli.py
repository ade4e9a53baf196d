"""yan generate: prints generations, writes JSONL, infilling keeps visible tokens, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from yan.generate import generate_texts, main
from yan.model import YAN
from yan.tokenizer import YanTokenizer

TEXTS = [
    "The river runs through the old city and the market.",
    "A painter walked across the bridge to the island castle.",
    "Winter light fell on the forest and the mountain village.",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny model with a BPE, saved as a training output would be."""
    folder = tmp_path_factory.mktemp("ckpt")
    tok = YanTokenizer.train(TEXTS * 20, vocab_size=300)
    torch.manual_seed(0)
    YAN.from_preset("tiny", vocab_size=tok.vocab_size).save_pretrained(folder, tokenizer=tok)
    return folder


def test_infill_prints_the_source_with_masks_filled(checkpoint, capsys):
    text = "The river <|mask|> through the old <|mask|> and the market."
    records = main(["--checkpoint", str(checkpoint), "--task", "infill", "--text", text])
    printed = capsys.readouterr().out.rstrip("\n")
    rec = records[0]
    assert printed == rec["filled"]
    assert rec["filled"].startswith("The river") and rec["filled"].endswith(" and the market.")
    tok = YanTokenizer.load(checkpoint)
    assert rec["length"] == len(tok.encode(text))  # infill: target length = source length
    assert "<|mask|>" not in rec["filled"]


def test_num_samples_seed_and_jsonl_output(checkpoint, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)))
    out = tmp_path / "out.jsonl"
    argv = [
        "--checkpoint",
        str(checkpoint),
        "--task",
        "qa",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--num-samples",
        "2",
        "--length",
        "5",
        "--seed",
        "3",
    ]
    records = main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert len(records) == 6 and lines[0].startswith("[1.1] ") and lines[-1].startswith("[3.2] ")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["sample"]) for r in written] == [(i, s) for i in range(3) for s in (0, 1)]
    assert all(r["length"] == 5 for r in written)
    assert main(argv) == records  # same seed, same generations
    capsys.readouterr()


def test_plain_text_input_and_length_head(checkpoint, tmp_path, capsys):
    inp = tmp_path / "in.txt"
    inp.write_text(TEXTS[0] + "\n\n" + TEXTS[1] + "\n")
    records = main(["--checkpoint", str(checkpoint), "--task", "classify", "--input", str(inp)])
    assert [r["input"] for r in records] == TEXTS[:2]
    assert all(1 <= r["length"] <= 64 for r in records)  # predicted by the length head
    assert len(capsys.readouterr().out.splitlines()) >= 2


def test_samples_differ_across_seeds(checkpoint):
    model, tok = YAN.from_pretrained(checkpoint), YanTokenizer.load(checkpoint)
    a = generate_texts(model, tok, TEXTS[:1], "qa", length=12, seed=0, num_samples=4)
    assert len({r["generation"] for r in a}) > 1  # different z0 / experts per sample


def test_dtype_option_generates_with_bf16_weights(checkpoint, capsys, monkeypatch):
    seen = []
    real = generate_texts

    def spy(model, *args, **kw):
        seen.append({p.dtype for p in model.parameters()})
        return real(model, *args, **kw)

    monkeypatch.setattr("yan.generate.generate_texts", spy)
    argv = ["--checkpoint", str(checkpoint), "--task", "qa", "--text", TEXTS[0], "--length", "6"]
    fp32 = main(argv)
    bf16 = main([*argv, "--dtype", "bf16"])
    assert seen == [{torch.float32}, {torch.bfloat16}]
    assert len(bf16) == len(fp32) == 1 and bf16[0]["length"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--text", "hi", "--length", "3", "--task", "infill"], "--length does not apply"),
        (["--text", "hi", "--length", "999"], "--length must be in"),
        (["--text", ""], "empty"),
        (["--text", "word " * 200, "--strict"], "--strict"),
        (["--input", "{bad}"], '"text" field'),
        (["--input", "missing.jsonl"], "not found"),
        (["--text", "hi", "--steps", "0"], "steps"),
        (["--text", "hi", "--task", "poem"], "invalid choice"),
        (["--text", "hi", "--dtype", "int8"], "invalid choice"),
    ],
)
def test_bad_input(checkpoint, tmp_path, capsys, extra, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no text field"}\n')
    extra = [e.format(bad=bad) for e in extra]
    argv = ["--checkpoint", str(checkpoint), "--task", "qa", *extra]
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "none"), "--task", "qa", "--text", "hi"])
    assert "--checkpoint" in capsys.readouterr().err


def test_long_input_is_truncated_with_a_warning(checkpoint):
    model, tok = YAN.from_pretrained(checkpoint), YanTokenizer.load(checkpoint)
    with pytest.warns(UserWarning, match="truncated"):
        recs = generate_texts(model, tok, ["word <|mask|> " * 100], "infill")
    assert recs[0]["length"] == model.config.max_len
