"""yan.baselines: training, oracle-length greedy generation, caching, padding, save/load."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from yan.baselines import (
    BASELINES,
    MaskedDiffusionBaseline,
    build_baseline,
    count_parameters,
    load_baseline,
    save_baseline,
    train_baseline,
)
from yan.batch import Seq2SeqBatch

V, PAD, MASK, MAX_LEN = 40, 38, 39, 32
SEP = V  # the autoregressive baselines' extra token


def _batch(seed: int = 0) -> Seq2SeqBatch:
    """Four rows with ragged sources and targets, right-padded."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, 30, (4, 6), generator=g)
    tgt = torch.randint(0, 30, (4, 5), generator=g)
    src_mask = torch.arange(6) < torch.tensor([6, 4, 2, 5])[:, None]
    tgt_mask = torch.arange(5) < torch.tensor([5, 3, 5, 4])[:, None]
    return Seq2SeqBatch(
        src.masked_fill(~src_mask, PAD), src_mask, tgt.masked_fill(~tgt_mask, PAD), tgt_mask
    )


def _build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_baseline(name, "tiny", vocab_size=V, pad_id=PAD, mask_id=MASK, max_len=MAX_LEN)


@pytest.fixture(scope="module")
def trained() -> dict:
    """Each tiny baseline trained on one repeated batch (shared by the tests below)."""
    torch.set_num_threads(1)
    batch, out = _batch(), {}
    for name in BASELINES:
        model = _build(name)
        losses = train_baseline(model, [batch], steps=120, lr=3e-3, warmup_steps=10, progress=False)
        out[name] = (model, losses)
    return out


@pytest.mark.parametrize("name", BASELINES)
def test_training_decreases_loss_and_memorises_the_batch(trained, name):
    model, losses = trained[name]
    assert len(losses) == 120 and all(map(math.isfinite, losses))
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.1 * first, (first, last)
    batch = _batch()
    out = model.generate(batch.src, batch.src_mask, batch.tgt_mask.sum(1))
    assert torch.equal(out, batch.tgt)  # oracle lengths, pads past each row's length


@pytest.mark.parametrize("name", BASELINES)
def test_generate_shape_and_never_special_ids(name):
    model = _build(name).eval()
    head = {"gpt2": "lm.lm_head", "bart": "seq2seq.lm_head", "masked-diffusion": "head"}[name]
    # Make padding, <|mask|> and <sep> by far the most likely tokens: generate must still avoid them.
    boost = torch.zeros(V + 1 if name != "masked-diffusion" else V)
    boost[[PAD, MASK]] = 1e4
    if name != "masked-diffusion":
        boost[SEP] = 1e4
    model.get_submodule(head).register_forward_hook(lambda mod, inp, out: out + boost)
    batch = _batch()
    for length in (1, 7):
        out = model.generate(batch.src, batch.src_mask, length)
        assert out.shape == (4, length) and out.dtype == torch.long
        assert ((out >= 0) & (out < V) & (out != PAD) & (out != MASK)).all()


def _naive_gpt2(model, src: torch.Tensor, length: int) -> torch.Tensor:
    """Greedy decoding of one unpadded row without a cache: a full forward per token."""
    ids = torch.cat([src, torch.tensor([SEP])])[None]
    for _ in range(length):
        logits = model.lm(input_ids=ids).logits[0, -1]
        logits[[PAD, MASK, SEP]] = float("-inf")
        ids = torch.cat([ids, logits.argmax().view(1, 1)], 1)
    return ids[0, -length:]


def _naive_bart(model, src: torch.Tensor, length: int) -> torch.Tensor:
    enc = torch.cat([torch.tensor([SEP]), src])[None]
    dec = torch.tensor([[SEP]])
    for _ in range(length):
        logits = model.seq2seq(input_ids=enc, decoder_input_ids=dec).logits[0, -1]
        logits[[PAD, MASK, SEP]] = float("-inf")
        dec = torch.cat([dec, logits.argmax().view(1, 1)], 1)
    return dec[0, 1:]


@pytest.mark.parametrize(("name", "naive"), [("gpt2", _naive_gpt2), ("bart", _naive_bart)])
def test_cached_batched_greedy_equals_naive_single_row_loop(name, naive):
    torch.manual_seed(1)
    model = _build(name, seed=1).eval()
    batch = _batch(seed=3)  # ragged sources: GPT-2 prompts are left-padded in the batch
    out = model.generate(batch.src, batch.src_mask, 6)
    with torch.inference_mode():
        for row in range(4):
            expected = naive(model, batch.src[row, batch.src_mask[row]], 6)
            assert torch.equal(out[row], expected), row


@pytest.mark.parametrize("name", BASELINES)
def test_batched_equals_single_and_padding_does_not_matter(trained, name):
    model, _ = trained[name]
    batch = _batch(seed=5)
    lengths = torch.tensor([4, 2, 5, 3])
    out = model.generate(batch.src, batch.src_mask, lengths)
    for row in range(4):
        real = batch.src[row, batch.src_mask[row]][None]
        single = model.generate(real, torch.ones_like(real, dtype=torch.bool), int(lengths[row]))
        assert torch.equal(out[row, : lengths[row]], single[0])
        assert (out[row, lengths[row] :] == PAD).all()
    # Extra padding columns and left- instead of right-padding change nothing.
    wide = torch.cat([batch.src, torch.full((4, 3), PAD)], 1)
    wide_mask = torch.cat([batch.src_mask, torch.zeros(4, 3, dtype=torch.bool)], 1)
    assert torch.equal(model.generate(wide, wide_mask, lengths), out)
    left = model.generate(wide.roll(3, 1), wide_mask.roll(3, 1), lengths)  # pads now in front
    assert torch.equal(left, out)


@pytest.mark.parametrize("name", BASELINES)
def test_loss_ignores_padding(name):
    model = _build(name).eval()
    batch = _batch()
    garbage = Seq2SeqBatch(
        torch.where(batch.src_mask, batch.src, 7),
        batch.src_mask,
        torch.where(batch.tgt_mask, batch.tgt, 9),
        batch.tgt_mask,
    )
    torch.manual_seed(0)
    a = model.loss(batch)
    torch.manual_seed(0)
    b = model.loss(garbage)
    assert a.ndim == 0 and torch.isfinite(a)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", BASELINES)
def test_empty_source(name):
    model = _build(name).eval()
    empty = torch.zeros(2, 0, dtype=torch.long)
    batch = Seq2SeqBatch(
        empty,
        empty.bool(),
        torch.tensor([[1, 2, 3], [4, 5, PAD]]),
        torch.tensor([[1, 1, 1], [1, 1, 0]]).bool(),
    )
    assert torch.isfinite(model.loss(batch))
    assert model.generate(empty, empty.bool(), 3).shape == (2, 3)


def test_masked_diffusion_unmasking_schedule(trained):
    model, _ = trained["masked-diffusion"]
    assert isinstance(model, MaskedDiffusionBaseline)
    batch = _batch()
    lengths = torch.tensor([5, 3, 5, 4])

    def masks_left(steps):
        states = list(model.iter_denoise(batch.src, batch.src_mask, lengths, steps))
        assert len(states) == steps
        return torch.stack([(s == MASK).sum(1) for s in states], 1)  # (B, steps)

    # T = L (the longest target): one token per step while a row has masks left.
    left = masks_left(5)
    assert left.tolist() == [[4, 3, 2, 1, 0], [2, 1, 0, 0, 0], [4, 3, 2, 1, 0], [3, 2, 1, 0, 0]]
    # T = 1: everything at once. T = 2: ceil(L/2) first, the rest second.
    assert masks_left(1).tolist() == [[0], [0], [0], [0]]
    assert masks_left(2).tolist() == [[2, 0], [1, 0], [2, 0], [2, 0]]
    assert MaskedDiffusionBaseline.unmask_schedule(torch.tensor([7]), 3).tolist() == [[3, 2, 2]]
    with pytest.raises(ValueError, match="steps"):
        model.generate(batch.src, batch.src_mask, lengths, steps=6)
    with pytest.raises(ValueError, match="steps"):
        model.generate(batch.src, batch.src_mask, lengths, steps=0)


@pytest.mark.parametrize("name", BASELINES)
def test_save_load_round_trip(trained, name, tmp_path):
    model, _ = trained[name]
    save_baseline(model, tmp_path / name)
    loaded = load_baseline(tmp_path / name)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert count_parameters(loaded) == count_parameters(model)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    batch = _batch(seed=9)
    assert torch.equal(
        loaded.generate(batch.src, batch.src_mask, 5), model.generate(batch.src, batch.src_mask, 5)
    )


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_baseline(tmp_path)


def test_paper_presets_match_paper_sizes():
    # Sizes with the GPT-2 vocabulary (50,257 + <|padding|> + <|mask|>), built without memory.
    expected = {"gpt2": 124e6, "bart": 139e6, "masked-diffusion": 200e6}
    for name, size in expected.items():
        with torch.device("meta"):
            model = build_baseline(
                name, "paper", vocab_size=50259, pad_id=50257, mask_id=50258, max_len=1024
            )
        assert abs(count_parameters(model) / size - 1) < 0.1, (name, count_parameters(model))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("t5", "tiny", vocab_size=V, pad_id=PAD, mask_id=MASK, max_len=MAX_LEN)
    with pytest.raises(ValueError, match="unknown preset"):
        build_baseline("gpt2", "huge", vocab_size=V, pad_id=PAD, mask_id=MASK, max_len=MAX_LEN)
    with pytest.raises(ValueError, match="mask_id"):
        build_baseline("gpt2", "tiny", vocab_size=V, pad_id=PAD, mask_id=V, max_len=MAX_LEN)
    model = _build("gpt2")
    batch = _batch()
    with pytest.raises(ValueError, match="tgt_len"):
        model.generate(batch.src, batch.src_mask, 0)
    with pytest.raises(ValueError, match="max_len"):
        model.generate(batch.src, batch.src_mask, MAX_LEN)
    with pytest.raises(ValueError, match="src"):
        model.generate(batch.src, batch.src_mask[:, :3], 2)
    with pytest.raises(ValueError, match="outside"):
        model.generate(batch.src + V, batch.src_mask, 2)
    no_target = Seq2SeqBatch(batch.src, batch.src_mask, batch.tgt, torch.zeros_like(batch.tgt_mask))
    for name in BASELINES:
        with pytest.raises(ValueError, match="no real target"):
            _build(name).loss(no_target)
    with pytest.raises(ValueError, match="ran out"):
        train_baseline(model, iter([batch]), steps=2, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_baseline(model, itertools.repeat(batch), steps=0, progress=False)
