"""The generation protocol: YAN and every baseline implement it, and it changes no number.

Every model of the registries (YAN and :data:`yan.baselines.BASELINES`) is a
:class:`yan.generation.GenerationModel`; ``generate_ids`` returns what the old per-kind calls
returned for the same seed; the one batched loop gives what the old collate loop gave.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from yan.baselines import BASELINES, build_baseline
from yan.bench.workloads import MODELS, build_generator
from yan.data import collate
from yan.data.tasks import Example
from yan.generation import GenerationModel, generate_batched, source_batches
from yan.model import YAN

VOCAB, PAD, MASK = 64, 62, 63
CPU = torch.device("cpu")


def build(name: str) -> GenerationModel:
    torch.manual_seed(0)
    if name == "yan":
        return YAN.from_preset("tiny", vocab_size=VOCAB, max_len=32).eval()
    return build_baseline(
        name, "tiny", vocab_size=VOCAB, pad_id=PAD, mask_id=MASK, max_len=33
    ).eval()


NAMES = ("yan", *BASELINES)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three right-padded sources of different lengths and mixed target lengths."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, VOCAB - 2, (3, 6), generator=g)
    mask = torch.arange(6) < torch.tensor([6, 4, 2])[:, None]
    return src.masked_fill(~mask, PAD), mask, torch.tensor([5, 2, 3])


@pytest.fixture(scope="module", params=NAMES)
def named(request) -> tuple[str, GenerationModel]:
    return request.param, build(request.param)


def test_every_registered_model_implements_the_protocol(named):
    _, model = named
    assert isinstance(model, GenerationModel)
    n = model.max_source_len
    assert model.supports(n, n) and not model.supports(n + 1, n + 1)


def test_generate_ids_shapes_and_padding_beyond_lengths(named):
    _, model = named
    src, mask, lengths = batch()
    ids = model.generate_ids(src, mask, lengths, steps=2, seed=0, pad_id=PAD)
    assert ids.shape == (3, 5) and ids.dtype == torch.long
    beyond = torch.arange(5) >= lengths[:, None]
    assert (ids[beyond] == PAD).all()
    assert (ids[~beyond] != PAD).all()  # padding is never generated


def test_steps_matter_only_where_the_model_says_so(named):
    _, model = named
    src, mask, lengths = batch()
    runs = [model.generate_ids(src, mask, lengths, steps=t, seed=0, pad_id=PAD) for t in (1, 5)]
    if model.uses_steps:
        assert not torch.equal(*runs)
    else:
        assert torch.equal(*runs)
    again = model.generate_ids(src, mask, lengths, steps=5, seed=0, pad_id=PAD)
    assert torch.equal(runs[1], again)  # a deterministic function of the seed


def test_protocol_call_gives_the_old_calls_ids(named):
    name, model = named
    src, mask, lengths = batch()
    new = model.generate_ids(src, mask, lengths, steps=3, seed=7, pad_id=PAD)
    if name == "yan":  # what yan.evaluate.generate_ids called before the protocol
        old = model.generate(src, mask, lengths, steps=3, seed=7, pad_id=PAD).tokens
    elif name == "masked-diffusion":
        old = model.generate(src, mask, lengths, steps=min(3, int(lengths.max())))
    else:
        old = model.generate(src, mask, lengths)
    assert torch.equal(new, old)


def test_yan_needs_steps_and_keeps_its_options():
    model = build("yan")
    src, mask, lengths = batch()
    with pytest.raises(ValueError, match="YAN needs steps"):
        model.generate_ids(src, mask, lengths)
    kept = model.generate_ids(src, mask, lengths, steps=2, seed=0, routing="argmax")
    want = model.generate(src, mask, lengths, steps=2, seed=0, routing="argmax").tokens
    assert torch.equal(kept, want)


def test_masked_diffusion_bounds_and_clamps_steps():
    model = build("masked-diffusion")
    assert model.max_steps(4) == 4 and build("yan").max_steps(4) is None
    src, mask, lengths = batch()
    clamped = model.generate_ids(src, mask, lengths, steps=99, pad_id=PAD)
    assert torch.equal(clamped, model.generate(src, mask, lengths, steps=5))


def test_generate_batched_is_the_old_collate_loop(named):
    name, model = named
    g = torch.Generator().manual_seed(3)
    examples = [
        Example(
            torch.randint(0, VOCAB - 2, (int(n),), generator=g).tolist(),
            torch.randint(0, VOCAB - 2, (int(m),), generator=g).tolist(),
        )
        for n, m in zip(torch.randint(1, 7, (7,), generator=g), torch.randint(1, 6, (7,)))
    ]
    got = generate_batched(
        model,
        [e.src_ids for e in examples],
        [len(e.tgt_ids) for e in examples],
        pad_id=PAD,
        steps=2,
        seed=4,
        batch_size=3,
    )
    want = []
    for n, first in enumerate(range(0, len(examples), 3)):
        b = collate(examples[first : first + 3], PAD)
        lengths = b.tgt_mask.sum(1)
        if name == "yan":
            tokens = model.generate(b.src, b.src_mask, lengths, steps=2, seed=4 + n, pad_id=PAD)
            tokens = tokens.tokens
        elif name == "masked-diffusion":
            tokens = model.generate(b.src, b.src_mask, lengths, steps=min(2, int(lengths.max())))
        else:
            tokens = model.generate(b.src, b.src_mask, lengths)
        want += [row[:k].tolist() for row, k in zip(tokens, lengths.tolist())]
    assert got == want


def test_source_batches_number_and_pad():
    out = list(source_batches([[1, 2, 3], [4], [5, 6]], pad_id=0, batch_size=2))
    assert [b.index for b in out] == [0, 1] and [list(b.rows) for b in out] == [[0, 1], [2]]
    assert out[0].src.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert out[0].src_mask.tolist() == [[True] * 3, [True, False, False]]
    with pytest.raises(ValueError, match="batch_size"):
        next(source_batches([[1]], pad_id=0, batch_size=0))


@pytest.mark.parametrize("model", MODELS)
def test_bench_generators_answer_through_the_protocol(model):
    gen = build_generator(model, "tiny", max_len=8, device=CPU)
    assert isinstance(gen.module, GenerationModel)
    assert gen.uses_steps == gen.module.uses_steps
    src = torch.randint(0, gen.vocab_size - 2, (2, 4))
    ids = gen.generate(
        src, torch.ones_like(src, dtype=torch.bool), 3, 2 if gen.uses_steps else None
    )
    assert ids.shape == (2, 3)


def test_generate_load_checkpoint_is_a_deprecated_wrapper(tmp_path):
    from yan.generate import load_checkpoint
    from yan.tokenizer import YanTokenizer

    tok = YanTokenizer.train(["a river runs through the city"] * 20, vocab_size=300)
    YAN.from_preset("tiny", vocab_size=tok.vocab_size).save_pretrained(tmp_path, tokenizer=tok)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, loaded = load_checkpoint(tmp_path)
    assert isinstance(model, YAN) and loaded.fingerprint == tok.fingerprint
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
