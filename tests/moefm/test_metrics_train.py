"""Metrics against hand-computable cases; trainer determinism and learning; toy data sets."""

import pytest
import torch

from moefm import FlowModel, toy
from moefm.metrics import (
    energy_distance,
    mmd,
    mode_coverage,
    sliced_wasserstein2,
    straightness,
    wasserstein2,
)
from moefm.sampling import sample
from moefm.train import TrainConfig, ot_coupling, train


class ConstantField(torch.nn.Module):
    """u(z, t) = a (straight lines) or a rotation (curved paths)."""

    def __init__(self, curved: bool) -> None:
        super().__init__()
        self.curved = curved

    def features(self, z, t, cond=None):
        return z

    def log_pi(self, z):
        return z.new_zeros(*z.shape[:-1], 1)

    def fields(self, z):
        return self.field(z, None).unsqueeze(-2)

    def field(self, z, idx):
        if self.curved:
            return torch.stack([-z[..., 1], z[..., 0]], -1)
        return torch.ones_like(z)


def test_straightness_zero_for_straight_field_positive_for_rotation():
    z0 = torch.randn(64, 2)
    assert straightness(ConstantField(False), z0, steps=20).total == pytest.approx(0.0, abs=1e-10)
    s = straightness(ConstantField(True), z0, steps=200).total
    # rotation by 1 rad: |v|^2 = |z|^2 and |z1 - z0|^2 = 2(1 - cos 1)|z|^2 -> S = E|z|^2 (1 - 2(1-cos1)... )
    r2 = (z0**2).sum(1).mean().item()
    chord = 2 * (1 - torch.cos(torch.tensor(1.0))).item()
    assert s == pytest.approx(r2 * (1 - chord), rel=0.02)


def test_straightness_per_expert_keys_match_used_experts():
    model = FlowModel.mlp(2, K=3, hidden=16, depth=1)
    st = straightness(
        model, torch.randn(100, 2), steps=10, generator=torch.Generator().manual_seed(0)
    )
    assert set(st.per_expert) <= {0, 1, 2} and len(st.per_expert) >= 2


def test_w2_exact_for_shift_and_permutation():
    x = torch.randn(200, 2)
    assert wasserstein2(x, x[torch.randperm(200)]) == pytest.approx(0.0, abs=1e-9)
    assert wasserstein2(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, rel=1e-6)
    assert sliced_wasserstein2(x, x + 1.0) > 0.5


def test_mmd_energy_distance_zero_for_identical_sets():
    x = torch.randn(100, 2)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert energy_distance(x, x + 2) > 1.0
    assert abs(mmd(x, torch.randn(100, 2))) < 0.05 < mmd(x, x + 2)


def test_mode_coverage_counts_modes_and_off_mode_mass():
    modes = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    s = torch.cat(
        [
            modes[0] + 0.01 * torch.randn(50, 2),
            modes[1] + 0.01 * torch.randn(50, 2),
            torch.full((20, 2), 2.5),
        ]
    )
    ms = mode_coverage(s, modes, radius=0.5)
    assert ms.coverage == pytest.approx(2 / 3)
    assert ms.off_mode == pytest.approx(20 / 120)
    assert ms.counts == [50, 50, 0]
    with pytest.raises(ValueError, match="radius"):
        mode_coverage(s, modes, radius=0)


def test_ot_coupling_is_the_optimal_permutation():
    z0, z1 = torch.randn(6, 2), torch.randn(6, 2)
    paired = ot_coupling(z0, z1)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, z0.tolist()))
    best = (paired - z1).pow(2).sum()
    for _ in range(200):  # no random permutation does better
        assert (z0[torch.randperm(6)] - z1).pow(2).sum() >= best - 1e-6


def test_training_is_deterministic_and_learns():
    data = toy.make("grid", 1000)
    cfg = TrainConfig(method="moefm", steps=150, hidden=32, depth=2, batch_size=128)
    a, b = train(data, cfg), train(data, cfg)
    assert a.losses == b.losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert sum(a.losses[-20:]) / 20 < sum(a.losses[:20]) / 20


def test_moefm_beats_vfm_at_one_step_on_the_grid():
    """The paper's Fig. 2 claim at its clearest: one Euler step (seeded, small budget)."""
    data, test = toy.make("grid", 2000), toy.make("grid", 500, seed=1)
    z0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    w2 = {}
    for method in ("vfm", "moefm"):
        res = train(data, TrainConfig(method=method, steps=600, hidden=64, depth=2))
        with torch.no_grad():
            w2[method] = wasserstein2(
                sample(res.model, z0, 1, generator=torch.Generator().manual_seed(0)).z1, test
            )
    assert w2["moefm"] < 0.7 * w2["vfm"], w2


def test_progress_callback_and_config_errors():
    seen = []
    train(
        toy.make("half-moons", 200),
        TrainConfig(method="vfm", steps=50, hidden=8, depth=1),
        progress=lambda step, _loss: seen.append(step),
    )
    assert seen[-1] == 50 and len(seen) >= 10
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="gan")
    with pytest.raises(ValueError, match="sigma"):
        TrainConfig(sigma=0)
    with pytest.raises(ValueError, match="K"):
        TrainConfig(K=0)
    with pytest.raises(ValueError, match="data"):
        train(torch.randn(10), TrainConfig(steps=1))
    with pytest.raises(ValueError, match="NaN"):
        train(torch.full((10, 2), float("nan")), TrainConfig(steps=1))


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_toy_data_sets_are_seeded_and_shaped(name):
    a, b, c = toy.make(name, 300, seed=1), toy.make(name, 300, seed=1), toy.make(name, 300, seed=2)
    assert a.shape == (300, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 4.5  # inside the plotting frame


def test_grid_samples_sit_on_the_mixture_modes():
    mix = toy.mixture("grid")
    ms = mode_coverage(toy.make("grid", 900), mix.means, radius=0.4)
    assert ms.coverage == 1.0 and ms.off_mode < 0.01
    assert toy.mixture("half-moons") is None
    with pytest.raises(ValueError, match="dataset"):
        toy.make("spiral", 10)
