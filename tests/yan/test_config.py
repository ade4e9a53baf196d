"""YANConfig: presets follow App. B.3, JSON round trip, validation of bad values."""

import json

import pytest

from yan.config import PRESETS, YANConfig, parse_override, preset, replace_given


def test_paper_presets_follow_appendix_b3():
    trf = preset("paper-trf")
    assert (trf.arch, trf.d_model, trf.enc_layers, trf.flow_layers) == ("transformer", 512, 6, 8)
    assert trf.cross_attn_layers == (1, 2, 3, 5)
    assert (trf.K, trf.sigma, trf.train_steps, trf.max_len) == (6, 0.1, 4, 2048)
    assert trf.vocab_size == 128_258  # LLaMA-3 + <|padding|> + <|mask|>
    mamba = preset("paper-mamba")
    assert (mamba.arch, mamba.enc_layers, mamba.flow_layers) == ("mamba", 4, 6)


def test_resolved_defaults():
    cfg = preset("small")
    assert cfg.latent_dim == cfg.d_model == 256
    assert cfg.gate_hidden == cfg.d_model
    assert preset("tiny", latent_dim=16).latent_dim == 16


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(name):
    cfg = preset(name, K=2)
    again = YANConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.cross_attn_layers, tuple)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="paper-trf"):
        preset("gpt-5")


def test_unknown_override_and_field_are_rejected():
    with pytest.raises(ValueError, match="n_experts"):
        preset("tiny", n_experts=3)
    with pytest.raises(ValueError, match="bogus"):
        YANConfig.from_dict({**preset("tiny").to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="bogus"):
        preset("tiny").replace(bogus=1)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (dict(d_model=30, n_heads=4), "divisible"),
        (dict(K=0), "K"),
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(cross_attn_layers=(0,)), "cross_attn_layers"),
        (dict(cross_attn_layers=(3,)), "cross_attn_layers"),  # tiny has 2 flow blocks
        (dict(cross_attn_layers=(1, 1)), "duplicates"),
        (dict(cross_attn_layers=()), "at least one"),
        (dict(arch="rnn"), "arch"),
        (dict(train_steps=0), "train_steps"),
        (dict(dropout=1.0), "dropout"),
        (dict(lambda_mmd=-1.0), "lambda_mmd"),
        (dict(mmd_max_tokens=1), "mmd_max_tokens"),
        (dict(vocab_size=2.5), "vocab_size"),
    ],
)
def test_validation(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        preset("tiny", **overrides)


def test_our_deviations_and_the_paper_literal_recipe():
    cfg = preset("paper-trf")
    assert cfg.mask_id == cfg.vocab_size - 1  # YAN's tokenizers put <|mask|> last
    assert (cfg.nll_reduction, cfg.flow_start, cfg.memory_positions) == ("dim", "source", True)
    paper = cfg.paper_literal()
    assert paper.nll_reduction == "sum" and paper.flow_start == "noise"
    assert not paper.memory_positions and not paper.mmd_scale_bandwidths
    assert paper.stage1_mask_rate == 0.0
    # architecture and the paper's own hyperparameters are untouched
    assert (paper.d_model, paper.K, paper.sigma, paper.train_steps) == (512, 6, 0.1, 4)
    assert preset("tiny").replace(vocab_size=100).mask_id == 99  # follows a new vocabulary


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("nll_reduction", "median", "nll_reduction"),
        ("flow_start", "data", "flow_start"),
        ("stage1_mask_rate", 1.0, "stage1_mask_rate"),
        ("start_noise", -1.0, "start_noise"),
        ("mask_id", 64, "mask_id"),
        ("conv_kernel", 2, "conv_kernel must be 0"),
        ("conv_kernel", -1, "conv_kernel must be 0"),
        ("ce_steps", (3, 0), "ce_steps must be Euler step counts >= 1"),
        ("ce_steps", (2.5,), "ce_steps must be a list of integers"),
    ],
)
def test_new_fields_are_validated(field, value, match):
    with pytest.raises(ValueError, match=match):
        preset("tiny", **{field: value})


def test_configs_saved_before_the_deviations_load_with_the_paper_values():
    old = preset("tiny").to_dict()
    for key in ("stage1_mask_rate", "mmd_scale_bandwidths", "nll_reduction", "memory_positions",
                "flow_start", "start_noise", "mask_id", "stage1_mask_span", "masked_ce_weight",
                "source_input", "flow_param", "conv_kernel", "expert_assignment",
                "ce_steps", "expert_floor"):  # fmt: skip
        old.pop(key)
    cfg = YANConfig.from_dict(old)
    assert cfg == preset("tiny").paper_literal()


def test_parse_override_reads_json_values_or_keeps_a_bare_string():
    assert parse_override("freeze_autoencoder=false") == ("freeze_autoencoder", False)
    assert parse_override("arch=mamba") == ("arch", "mamba")
    assert parse_override(" K = 4") == ("K", 4)
    assert parse_override("ce_steps=[2, 4]") == ("ce_steps", [2, 4])
    for bad in ("K", "=4"):
        with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
            parse_override(bad)


def test_replace_given_keeps_the_settings_of_unset_options():
    """The benchmarks' command line: an option left at None keeps the config's value."""
    base = preset("tiny")
    assert replace_given(base, K=None, d_model=None) == base
    changed = replace_given(base, K=5, d_model=None)
    assert (changed.K, changed.d_model, base.K) == (5, base.d_model, PRESETS["tiny"]["K"])
    with pytest.raises(TypeError):
        replace_given(base, not_a_field=1)
