"""Bad input to yan fails early with one line naming the field or file: configs and --set,
tokenizer files, checkpoints that cannot do the task (shared by yan eval and yan generate),
generation options, data files, the bench options and the yan command's error net."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from yan import cli, evaluate, loading
from yan.bench import cli as bench_cli
from yan.config import preset
from yan.data import load_corpus, prepare
from yan.data.batching import collate
from yan.data.tasks import Example
from yan.generate import generate_texts
from yan.generate import main as generate_main
from yan.model import YAN
from yan.run_state import STATE_FILE
from yan.tokenizer import BPE_FILE, META_FILE, YanTokenizer, pad_batch

TEXTS = [
    "The river runs through the old city and the market.",
    "A painter walked across the bridge to the island castle.",
    "Winter light fell on the forest and the mountain village.",
]
OTHER_TEXTS = ["Quantum engines hum beside frozen lakes while zebras jog.", "Xylophones wax."]
VOCAB = 270  # 256 bytes + 12 merges + 2 specials: both corpora fill it, so sizes are equal


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("YAN_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "yan-cache"))
    monkeypatch.delenv("YAN_TRACEBACK", raising=False)


@pytest.fixture(scope="module")
def tok() -> YanTokenizer:
    return YanTokenizer.train(TEXTS * 20, vocab_size=VOCAB)


@pytest.fixture(scope="module")
def foreign(tok, tmp_path_factory) -> Path:
    """The files of another BPE with exactly as many ids: only the fingerprint differs."""
    other = YanTokenizer.train(OTHER_TEXTS * 20, vocab_size=VOCAB)
    assert other.vocab_size == tok.vocab_size and other.fingerprint != tok.fingerprint
    folder = tmp_path_factory.mktemp("foreign-tok")
    other.save(folder)
    return folder


@pytest.fixture(scope="module")
def saved(tok, tmp_path_factory) -> Path:
    """An untrained tiny model with its BPE, as ``save_pretrained`` writes it (no run info)."""
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    torch.manual_seed(0)
    YAN.from_preset("tiny", vocab_size=tok.vocab_size).save_pretrained(folder, tokenizer=tok)
    return folder


def _copy(src: Path, dst: Path, **run: object) -> Path:
    """A copy of a checkpoint folder; ``run`` settings go to its trainer_state.json."""
    shutil.copytree(src, dst)
    if run:
        (dst / STATE_FILE).write_text(json.dumps({"run": run}))
    return dst


def _generate(capsys, *argv: object) -> str:
    """Run ``yan generate``; expect exit 2 and return its one-line error."""
    with pytest.raises(SystemExit) as exit_:
        generate_main([str(a) for a in argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---- configs: --set and config.json ----------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sigma", "abc", r"sigma must be a finite number, got 'abc' \(str\)"),
        ("mlp_ratio", float("nan"), "mlp_ratio must be a finite number, got nan"),
        ("sigma", float("inf"), "sigma must be a finite number"),
        ("sigma", 1e-30, "sigma must be a finite number >= 1e-06"),
        ("mlp_ratio", 0.01, r"mlp_ratio=0.01 gives MLPs of round\(0.01 x 32\) = 0 units"),
        ("dropout", "0.1", "dropout must be a finite number, got '0.1'"),
        ("freeze_autoencoder", "no", "freeze_autoencoder must be true or false"),
        ("tokenizer", 5, "tokenizer must be a string"),
        ("cross_attn_layers", "ab", "cross_attn_layers must be a list of integers"),
    ],
)
def test_config_fields_are_checked_by_type_and_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", **{field: value})


def test_config_keeps_ints_for_float_fields_as_floats():
    cfg = preset("tiny", mlp_ratio=1, sigma=1)
    assert isinstance(cfg.mlp_ratio, float) and cfg.sigma == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sigma=abc", "sigma must be a finite number, got 'abc'"),
        ("mlp_ratio=NaN", "mlp_ratio must be a finite number, got nan"),
        ("mlp_ratio=0.01", "0 units"),
    ],
)
def test_train_set_errors_are_one_line(override, message, tmp_path, capsys):
    data = tmp_path / "c.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    argv = ["train", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--set", override, "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_config_json_with_a_string_for_a_number_names_file_and_field(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["d_model"] = "32"
    (folder / "config.json").write_text(json.dumps(config))
    line = _generate(capsys, "--checkpoint", folder, "--task", "qa", "--text", "hi")
    assert "config.json" in line and "d_model must be an integer, got '32'" in line


# ---- tokenizer files ---------------------------------------------------------------------------
def test_truncated_tokenizer_json_is_one_line_naming_the_file(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path / "ckpt")
    text = (folder / BPE_FILE).read_text()
    (folder / BPE_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=rf"{BPE_FILE} is not a readable tokenizer file"):
        YanTokenizer.load(folder)
    line = _generate(capsys, "--checkpoint", folder, "--task", "qa", "--text", "hi")
    assert BPE_FILE in line and "truncated" in line


def test_broken_tokenizer_meta_names_the_file(saved, tmp_path):
    folder = _copy(saved, tmp_path / "ckpt")
    (folder / META_FILE).write_text('{"name": "bpe", ')
    with pytest.raises(ValueError, match=rf"{META_FILE} is not valid JSON"):
        YanTokenizer.load(folder)
    (folder / META_FILE).write_text('{"name": "bpe"}')
    with pytest.raises(ValueError, match="'vocab_size' must be a int"):
        YanTokenizer.load(folder)


def test_a_foreign_tokenizer_json_next_to_the_meta_is_refused(saved, foreign, tmp_path):
    folder = _copy(saved, tmp_path / "ckpt")
    shutil.copy(foreign / BPE_FILE, folder / BPE_FILE)  # same size, other merges
    with pytest.raises(ValueError, match="its files come from two different tokenizers"):
        YanTokenizer.load(folder)


def test_fingerprint_does_not_depend_on_how_merges_are_serialised(tok, tmp_path):
    tok.save(tmp_path)
    data = json.loads((tmp_path / BPE_FILE).read_text())
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]  # the old form
    (tmp_path / BPE_FILE).write_text(json.dumps(data))
    assert YanTokenizer.load(tmp_path).fingerprint == tok.fingerprint


# ---- checkpoints that cannot do the task: one check for eval and generate --------------------
def test_eval_and_generate_share_the_checkpoint_checks():
    assert evaluate.load_checkpoint is loading.load_checkpoint
    assert evaluate.check_task is loading.check_task


def test_generate_refuses_a_stage1_autoencoder(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path / "s1", stage="1", task="pretrain")
    line = _generate(capsys, "--checkpoint", folder, "--task", "infill", "--text", "a <|mask|>")
    assert "stage-1 autoencoder" in line


def test_generate_refuses_a_task_the_checkpoint_was_not_trained_for(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path / "s2", stage="2", task="infill")
    line = _generate(capsys, "--checkpoint", folder, "--task", "classify", "--text", "good")
    assert "trained for task 'infill', not --task 'classify'" in line
    # the task it was trained for still works
    records = generate_main(
        ["--checkpoint", str(folder), "--task", "infill", "--text", "a <|mask|>"]
    )
    assert len(records) == 1
    capsys.readouterr()


def test_generate_refuses_a_foreign_tokenizer_of_the_same_size(
    saved, tok, foreign, tmp_path, capsys
):
    # both tokenizer files replaced: only the fingerprint the run recorded tells
    folder = _copy(saved, tmp_path / "s2", stage="2", task="infill")
    (folder / STATE_FILE).write_text(
        json.dumps(
            {"run": {"stage": "2", "task": "infill", "tokenizer_fingerprint": tok.fingerprint}}
        )
    )
    for name in (META_FILE, BPE_FILE):
        shutil.copy(foreign / name, folder / name)
    line = _generate(capsys, "--checkpoint", folder, "--task", "infill", "--text", "a <|mask|>")
    assert "is not the one the checkpoint" in line and "same size" in line
    # --tokenizer pointing at a foreign one is refused like in yan eval
    line = _generate(
        capsys, "--checkpoint", saved, "--tokenizer", foreign, "--task", "qa", "--text", "hi"
    )
    assert "is not the tokenizer saved with the checkpoint" in line


# ---- generation options --------------------------------------------------------------------------
def test_generate_refuses_an_infinite_temperature(saved, capsys):
    line = _generate(
        capsys, "--checkpoint", saved, "--task", "qa", "--text", "hi", "--length", "3",
        "--temperature", "inf",
    )  # fmt: skip
    assert "temperature must be a finite number >= 0, got inf" in line


def test_generate_texts_refuses_a_string_seed(saved):
    model, tok = YAN.from_pretrained(saved), YanTokenizer.load(saved)
    with pytest.raises(ValueError, match="--seed must be an integer, got 'abc'"):
        generate_texts(model, tok, TEXTS[:1], "qa", length=3, seed="abc")


def test_negative_pad_id_is_refused():
    with pytest.raises(ValueError, match="pad_id must be an integer id >= 0, got -5"):
        pad_batch([[1, 2], [3]], -5)
    with pytest.raises(ValueError, match="pad_id"):
        collate([Example([1, 2], [3])], -5)


# ---- data files ----------------------------------------------------------------------------------
def test_non_utf8_data_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text"):
        load_corpus(bad)
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="bad.jsonl is not UTF-8 text"):
        load_corpus(bad_jsonl)


def test_non_utf8_generate_input_is_one_line(saved, tmp_path, capsys):
    bad = tmp_path / "in.txt"
    bad.write_bytes("café\n".encode("latin-1"))
    line = _generate(capsys, "--checkpoint", saved, "--task", "qa", "--input", bad)
    assert "in.txt is not UTF-8 text" in line


def test_data_without_validation_examples_warns(tok, tmp_path):
    data = tmp_path / "two.txt"
    data.write_text(TEXTS[0] + "\n" + TEXTS[1] + "\n")  # 2 records: all go to training
    with pytest.warns(UserWarning, match="yields no validation example"):
        splits = prepare(data, "pretrain", tok, max_len=32, use_cache=False)
    assert splits["train"] and not splits["val"]


# ---- yan bench and the yan command ------------------------------------------------------------
def test_bench_repeats_zero_is_an_error_not_the_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_cli.main(["latency", "--repeats", "0", "--models", "yan-trf", "--presets", "tiny"])
    assert exit_.value.code == 2
    assert "--repeats must be an integer >= 1, got 0" in capsys.readouterr().err


def test_yan_command_prints_escaping_errors_as_one_line(monkeypatch, capsys):
    def main(argv):
        raise TypeError("expected a number\nfor --x, got 'abc'")

    monkeypatch.setitem(sys.modules, "fake_cmd", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_cmd", "a test command"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fake"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "yan fake: error: expected a number for --x, got 'abc'\n"
    monkeypatch.setenv("YAN_TRACEBACK", "1")
    with pytest.raises(TypeError):
        cli.main(["fake"])
