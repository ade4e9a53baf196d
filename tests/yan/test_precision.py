"""Inference in a lower precision: what runs in the weights' dtype, what stays float32."""

from __future__ import annotations

import warnings

import pytest
import torch

from yan import precision
from yan.baselines import build_baseline
from yan.config import preset
from yan.model import YAN
from yan.precision import (
    SlowDtypeWarning,
    cast,
    dtype_name,
    fast_dtypes,
    native_dtype,
    resolve_dtype,
)

ARCHS = ("transformer", "mamba")


def _model(arch: str, **overrides) -> YAN:
    torch.manual_seed(0)
    return YAN(preset("tiny", vocab_size=64, arch=arch, **overrides)).eval()


def _src() -> torch.Tensor:
    return torch.randint(0, 60, (4, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "name,expected",
    [
        ("float32", torch.float32),
        ("bf16", torch.bfloat16),
        ("BFloat16", torch.bfloat16),
        ("fp16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_dtype_names_resolve_and_round_trip(name, expected):
    assert resolve_dtype(name) is expected
    assert resolve_dtype(dtype_name(expected)) is expected


@pytest.mark.parametrize("bad", ["int8", "float64x", torch.int64, 3])
def test_unknown_dtypes_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype(bad)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_bfloat16_model_runs_its_trunk_in_bf16_but_integrates_the_state_in_float32(arch):
    model = _model(arch).to(torch.bfloat16)
    seen: dict[str, torch.dtype] = {}
    original = model.flow.features

    def spy(z, t, cond=None):
        seen.setdefault("state", z.dtype)
        feats = original(z, t, cond)
        seen.setdefault("trunk", feats.h.dtype)
        seen.setdefault("log_pi", model.flow.log_pi(feats).dtype)
        return feats

    model.flow.features = spy
    src = _src()
    mask = torch.ones_like(src, dtype=torch.bool)
    out, _, _ = model._flow_endpoint(src, mask, 12, 3, "euler", "frozen", None)
    assert seen == {"state": torch.float32, "trunk": torch.bfloat16, "log_pi": torch.float32}
    assert out.z1.dtype == torch.float32
    gen = model.generate(src, tgt_len=12, steps=3, seed=0)
    assert gen.tokens.dtype == torch.long and int(gen.tokens.max()) < 64


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("routing", ["frozen", "argmax", "mean"])
def test_bfloat16_generation_agrees_with_float32(arch, routing):
    """Same seed, same noise (drawn in float32 either way): the tokens differ only where
    bf16 rounding flips a near tie (0-4% of 48 tokens of these random tiny models)."""
    model, src = _model(arch), _src()
    ref = model.generate(src, tgt_len=12, steps=3, seed=0, routing=routing)
    model.to(torch.bfloat16)
    low = model.generate(src, tgt_len=12, steps=3, seed=0, routing=routing)
    assert (ref.tokens == low.tokens).float().mean() >= 0.9
    if ref.experts is not None:  # a bf16 trunk feeds the gate: near ties may flip
        assert (ref.experts == low.experts).float().mean() >= 0.9


def test_bfloat16_choice_scores_stay_close_to_float32():
    model, src = _model("transformer"), _src()
    choices = torch.tensor([[3, 4], [5, 6], [7, 8]])
    ref = model.choice_scores(src, None, choices, steps=2, seed=0)
    low = model.to(torch.bfloat16).choice_scores(src, None, choices, steps=2, seed=0)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.1, rtol=0.02)


def test_from_pretrained_casts_to_the_requested_dtype(tmp_path):
    _model("transformer").save_pretrained(tmp_path / "m")
    model = YAN.from_pretrained(tmp_path / "m", dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in YAN.from_pretrained(tmp_path / "m").parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="unknown dtype"):
        YAN.from_pretrained(tmp_path / "m", dtype="int4")


def test_float32_is_native_everywhere_and_float16_never_on_a_cpu():
    assert native_dtype("float32", "cpu") and native_dtype(torch.float32, "cuda")
    assert not native_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        native_dtype("int4", "cpu")


@pytest.mark.parametrize("has_bf16", [False, True])
def test_bfloat16_on_a_cpu_is_native_exactly_when_it_has_the_instructions(monkeypatch, has_bf16):
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: has_bf16)
    assert native_dtype("bf16", "cpu") is has_bf16
    assert fast_dtypes("cpu") == (("float32", "bfloat16") if has_bf16 else ("float32",))


def test_the_cpu_probe_asks_onednn_when_torch_cpu_has_no_probes(monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert precision._cpu_has_bf16() is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@pytest.mark.parametrize("has_bf16", [False, True])
def test_cast_warns_only_where_the_dtype_is_emulated(monkeypatch, tmp_path, has_bf16):
    """The cast happens either way (the results are right, only slow); the warning says so,
    from ``cast`` and from ``from_pretrained(dtype=...)``, which uses it."""
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: has_bf16)
    _model("transformer").save_pretrained(tmp_path / "m")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = [
            cast(_model("transformer"), "bf16"),
            YAN.from_pretrained(tmp_path / "m", dtype="bf16"),
        ]
    slow = [w for w in caught if issubclass(w.category, SlowDtypeWarning)]
    assert len(slow) == (0 if has_bf16 else 2)
    assert all("bfloat16 on this cpu is emulated" in str(w.message) for w in slow)
    for model in models:
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_greedy_decoding_in_bf16_picks_a_maximal_logit():
    """The two-pass greedy decoder (amax per vocabulary slice, then argmax in the winning
    slice) returns a token whose bf16 logit is the row's maximum."""
    model = _model("transformer").to(torch.bfloat16)
    z = torch.randn(40, model.config.latent_dim)
    ids = model.decoder.decode(z, vocab_slice=7)
    logits = model.decoder(z).float()
    assert torch.equal(logits.gather(1, ids[:, None]).squeeze(1), logits.max(-1).values)


@pytest.mark.parametrize("name", ["gpt2", "bart", "masked-diffusion"])
def test_every_baseline_generates_in_bfloat16(name):
    torch.manual_seed(0)
    model = build_baseline(name, "tiny", vocab_size=64, pad_id=62, mask_id=63, max_len=64).eval()
    src = _src()
    mask = torch.ones_like(src, dtype=torch.bool)
    ref = model.generate(src, mask, 12)
    low = model.to(torch.bfloat16).generate(src, mask, 12)
    # masked diffusion unmasks by confidence rank: one flipped near tie changes what is
    # unmasked next, so differences cascade (85% identical for this random model)
    assert low.shape == ref.shape and (ref == low).float().mean() >= 0.8
