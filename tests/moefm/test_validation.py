"""No silent wrong numbers: bad inputs to the public moefm API raise errors that name the
argument, and the 2D benchmark records a diverged run instead of scoring its NaN samples."""

from __future__ import annotations

import math

import pytest
import torch

from moefm import (
    FlowModel,
    MoEHead,
    linear_path,
    mmd2,
    moefm_nll,
    responsibilities,
    sample,
    vfm_loss,
)
from moefm import bench as moefm_bench
from moefm._checks import NonFiniteError
from moefm.metrics import (
    energy_distance,
    mmd,
    mode_coverage,
    sliced_wasserstein2,
    straightness,
    wasserstein2,
)
from moefm.train import TrainConfig, TrainResult


def _nan_points(n: int = 40) -> torch.Tensor:
    x = torch.randn(n, 2)
    x[3, 1] = float("nan")
    return x


# ---- metrics --------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", [wasserstein2, sliced_wasserstein2, mmd, energy_distance])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_metrics_refuse_non_finite_samples(metric, bad):
    x = torch.randn(40, 2)
    x[0, 0] = bad
    # NonFiniteError is both: a bad input and a diverged run
    with pytest.raises(ValueError, match="x: 1 of 40 points hold NaN or inf"):
        metric(x, torch.randn(40, 2))
    with pytest.raises(FloatingPointError, match="y:"):
        metric(torch.randn(40, 2), x)


def test_wasserstein2_of_nan_samples_is_not_a_perfect_score():
    # POT returns 0.0 here when given the NaN cost matrix
    with pytest.raises(NonFiniteError):
        wasserstein2(_nan_points(), torch.randn(40, 2))


def test_mode_coverage_refuses_nan_samples_and_radius():
    modes = torch.zeros(1, 2)
    with pytest.raises(NonFiniteError, match="samples"):
        mode_coverage(_nan_points(), modes, radius=1.0)
    with pytest.raises(ValueError, match="radius"):
        mode_coverage(torch.randn(5, 2), modes, radius=float("nan"))


def test_metrics_refuse_empty_samples():
    with pytest.raises(ValueError, match="no points"):
        wasserstein2(torch.zeros(0, 2), torch.randn(5, 2))


class _ExplodingField:
    """A one-expert field u = 1e30 z that overflows to inf within a few Euler steps."""

    def features(self, z, t, cond=None):
        return z

    def log_pi(self, feats):
        return feats.new_zeros(*feats.shape[:-1], 1)

    def fields(self, feats):
        return (1e30 * feats).unsqueeze(-2)

    def field(self, feats, idx):
        return 1e30 * feats


def test_straightness_refuses_a_diverged_trajectory():
    with pytest.raises(NonFiniteError, match="diverged"):
        straightness(_ExplodingField(), torch.randn(8, 2), steps=8)


# ---- MoEHead / FlowModel expert indices -----------------------------------------------------
@pytest.mark.parametrize("bad", [7, -1, 3])
def test_expert_index_out_of_range_is_refused(bad):
    head = MoEHead(4, 2, K=3)
    idx = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"outside \[0, K=3\): \[{bad}\]"):
        head.expert(torch.randn(4, 4), idx)
    model = FlowModel.mlp(2, K=3, hidden=8, depth=1)
    feats = model.features(torch.randn(4, 2), torch.rand(4))
    with pytest.raises(ValueError, match="outside"):
        model.field(feats, idx)


def test_expert_index_checks_for_one_expert_and_dtype():
    head = MoEHead(4, 2, K=1)
    with pytest.raises(ValueError, match="outside"):
        head.expert(torch.randn(3, 4), torch.tensor([0, 1, 0]))
    torch.testing.assert_close(
        head.expert(torch.randn(3, 4).zero_(), torch.zeros(3, dtype=torch.long)),
        head.bias[0].expand(3, 2),
    )
    for idx in (torch.zeros(3), torch.zeros(3, dtype=torch.bool)):
        with pytest.raises(TypeError, match="integer tensor"):
            MoEHead(4, 2, K=3).expert(torch.randn(3, 4), idx)


def test_valid_expert_indices_still_match_the_full_computation():
    head = MoEHead(6, 3, K=4)
    h, idx = torch.randn(5, 7, 6), torch.randint(0, 4, (5, 7))
    full = head.experts(h).gather(-2, idx[..., None, None].expand(5, 7, 1, 3)).squeeze(-2)
    torch.testing.assert_close(head.expert(h, idx), full)


# ---- dtypes: floats are cast to the parameters' dtype, integers refused --------------------
def test_head_casts_float64_and_refuses_integer_features():
    head = MoEHead(4, 2, K=3)
    h = torch.randn(5, 4)
    out64 = head(h.double())
    assert out64.u.dtype == torch.float32 and out64.log_pi.dtype == torch.float32
    torch.testing.assert_close(out64.u, head(h).u)
    assert head.expert(h.double(), torch.zeros(5, dtype=torch.long)).dtype == torch.float32
    with pytest.raises(TypeError, match="h must be a floating-point tensor, got torch.int64"):
        head(torch.ones(5, 4, dtype=torch.long))


def test_sample_keeps_float64_state_and_refuses_integer_noise():
    model = FlowModel.mlp(2, K=3, hidden=8, depth=1)
    z0 = torch.randn(6, 2)
    out = sample(model, z0.double(), 3, generator=torch.Generator().manual_seed(0))
    ref = sample(model, z0, 3, generator=torch.Generator().manual_seed(0))
    assert out.z1.dtype == torch.float64
    torch.testing.assert_close(out.z1.float(), ref.z1)
    with pytest.raises(TypeError, match="z0 must be a floating-point tensor"):
        sample(model, torch.zeros(6, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="empty batch"):
        sample(model, torch.zeros(0, 2), 3)


def test_flow_model_names_mismatched_batch_sizes():
    model = FlowModel.mlp(2, K=2, hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"got shape \(3,\) for z of shape \(5, 2\)"):
        model(torch.randn(5, 2), torch.rand(3))
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        model(torch.randn(2, 3, 2), torch.rand(4))
    # scalar, per-sample and per-position times are all accepted
    for t in (0.5, torch.rand(2), torch.rand(2, 3)):
        assert model(torch.randn(2, 3, 2), t).u.shape == (2, 3, 2, 2)


# ---- linear path ----------------------------------------------------------------------------
def test_linear_path_refuses_integer_tensors_instead_of_truncating():
    z0, z1 = torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 2)
    with pytest.raises(TypeError, match="z0 must be a floating-point tensor"):
        linear_path(z0, z1, 0.5)
    assert linear_path(z0.float(), z1.float(), 0.5).z_t.eq(1.0).all()


@pytest.mark.parametrize("t", [2.0, -0.1, float("nan"), torch.tensor([0.5, 1.5])])
def test_linear_path_refuses_times_outside_unit_interval(t):
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        linear_path(torch.zeros(2, 2), torch.ones(2, 2), t)


@pytest.mark.parametrize("which", ["z0", "z1"])
def test_linear_path_refuses_non_finite_points(which):
    z = {"z0": torch.zeros(3, 2), "z1": torch.ones(3, 2)}
    z[which][1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=f"{which} contains NaN"):
        linear_path(z["z0"], z["z1"], torch.rand(3))


def test_linear_path_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        linear_path(torch.zeros(0, 2), torch.zeros(0, 2), torch.rand(0))


# ---- losses ---------------------------------------------------------------------------------
def _nll_case(n: int = 4):
    u = torch.randn(n, 3, 2)
    return u, torch.log_softmax(torch.randn(n, 3), -1), torch.randn(n, 2)


def test_moefm_nll_refuses_sigma_too_small_to_compute():
    u, log_pi, target = _nll_case()
    with pytest.raises(ValueError, match=r"sigma must be >= 1e-06, got 1e-30"):
        moefm_nll(u, log_pi, target * 100, 1e-30)
    with pytest.raises(ValueError, match="sigma"):
        responsibilities(u, log_pi, target, 1e-30)
    with pytest.raises(ValueError, match="sigma"):
        TrainConfig(sigma=1e-30)
    # at the floor the promise of the docstring holds: finite values and gradients
    u.requires_grad_()
    loss = moefm_nll(u, log_pi, target * 100, 1e-6)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(u.grad).all()


def test_losses_refuse_nan_targets_and_empty_batches():
    u, log_pi, target = _nll_case()
    target[0, 0] = float("nan")
    for fn in (moefm_nll, responsibilities):
        with pytest.raises(NonFiniteError, match="u_target"):
            fn(u, log_pi, target, 0.1)
    with pytest.raises(NonFiniteError, match="u_target"):
        vfm_loss(torch.zeros(4, 2), target)
    with pytest.raises(ValueError, match="empty batch"):
        moefm_nll(torch.zeros(0, 3, 2), torch.zeros(0, 3), torch.zeros(0, 2), 0.1)
    with pytest.raises(ValueError, match="empty batch"):
        vfm_loss(torch.zeros(0, 2), torch.zeros(0, 2))


@pytest.mark.parametrize("bandwidths", [(float("nan"),), (1.0, float("inf")), (0.0,), ("1",)])
def test_mmd_refuses_bad_bandwidths(bandwidths):
    with pytest.raises(ValueError, match="bandwidths must be finite numbers > 0"):
        mmd2(torch.randn(5, 2), torch.randn(5, 2), bandwidths)


# ---- TrainConfig ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weight_decay", -1, "weight_decay must be a finite number >= 0"),
        ("weight_decay", float("nan"), "weight_decay"),
        ("seed", "abc", "seed must be an integer >= 0, got 'abc'"),
        ("seed", 1.5, "seed must be an integer"),
        ("sigma", "abc", "sigma must be a finite number > 0, got 'abc'"),
        ("lr", float("inf"), "lr must be a finite number > 0"),
        ("steps", "10", "steps must be an integer >= 1"),
    ],
)
def test_train_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


# ---- the 2D benchmark: diverged runs are records, not numbers -------------------------------
def _tiny_bench() -> moefm_bench.BenchConfig:
    return moefm_bench.BenchConfig(
        datasets=("grid",),
        seeds=1,
        train_steps=2,
        n_train=64,
        n_eval=32,
        sigmas=(0.1,),
        routings=("frozen",),
        straight_steps=4,
    )


def test_bench_reports_diverged_runs(monkeypatch):
    real_train = moefm_bench.train

    def train(data, cfg):  # vfm: the loss diverges; moefm: the trained model outputs NaN
        if cfg.method == "vfm":
            raise FloatingPointError("training diverged at step 2 (loss nan)")
        res = real_train(data, cfg)
        if cfg.method == "moefm":
            with torch.no_grad():
                res.model.head.bias.fill_(float("nan"))
        return res

    monkeypatch.setattr(moefm_bench, "train", train)
    records, models = moefm_bench.evaluate(_tiny_bench(), progress=False)
    by_method = {m: [r for r in records if r["method"] == m] for m in ("vfm", "ot-cfm", "moefm")}
    assert all(len(rs) == len(moefm_bench.STEPS) for rs in by_method.values())
    for method, reason in (("vfm", "training diverged"), ("moefm", "hold NaN or inf")):
        for r in by_method[method]:
            assert r["diverged"] and reason in r["reason"]
            assert r["w2"] is None and r["mmd"] is None
    for r in by_method["ot-cfm"]:  # the healthy run keeps its numbers
        assert r["diverged"] is False and math.isfinite(r["w2"]) and r["w2"] > 0
    assert ("grid", "vfm", 0.1) not in models and ("grid", "moefm", 0.1) in models

    agg = moefm_bench.aggregate(records)
    vfm = [a for a in agg if a["method"] == "vfm"]
    assert all(a["w2"] is None and a["diverged"] == 1 for a in vfm)
    table = moefm_bench.table(agg)
    vfm_row = next(line for line in table.splitlines() if "| vfm |" in line)
    assert vfm_row.count("diverged") >= len(moefm_bench.STEPS)
    assert "nan" not in table.lower()


def test_bench_aggregate_averages_the_seeds_that_did_not_diverge():
    base = {"dataset": "grid", "method": "vfm", "K": 1, "sigma": None, "routing": "none"}
    records = [
        {**base, "steps": 1, "seed": 0, "diverged": False, "w2": 1.0, "mmd": 0.1,
         "straightness": 0.5, "train_seconds": 1.0},
        {**base, "steps": 1, "seed": 1, "diverged": True, "reason": "x", "w2": None,
         "mmd": None, "train_seconds": None},
    ]  # fmt: skip
    (agg,) = moefm_bench.aggregate(records)
    assert agg["w2"] == 1.0 and agg["diverged"] == 1 and agg["seeds"] == 2
    assert "1.000*" in moefm_bench.table([{**agg, "steps": T} for T in moefm_bench.STEPS])


def test_bench_records_of_a_healthy_run_are_unchanged_in_kind():
    res = TrainResult(FlowModel.mlp(2, K=1, hidden=8, depth=1), TrainConfig(method="vfm"))
    base = {"dataset": "grid", "method": "vfm", "K": 1, "sigma": None, "routing": "none",
            "seed": 0, "train_seconds": 0.0}  # fmt: skip
    test = torch.randn(32, 2)
    recs = moefm_bench._evaluate_run(_tiny_bench(), res.model, "none", base, test, test, None)
    assert [r["steps"] for r in recs] == list(moefm_bench.STEPS)
    assert all(not r["diverged"] and math.isfinite(r["w2"]) for r in recs)
