"""Closed forms for Gaussian-mixture data (Prop. 3.1, Thm 3.2, App. A.3) and a learned field."""

import pytest
import torch

from moefm import toy
from moefm.theory import GaussianMixture, moefm_optimum
from moefm.train import TrainConfig, train


def _two_modes():
    return GaussianMixture(
        torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.tensor([0.2, 0.4]), [0.3, 0.7]
    )


def test_vfm_optimum_is_the_conditional_expectation():
    """E[(u* - u_hat(z_t)) phi(z_t)] = 0 for every test function phi iff u_hat = E[u* | z_t]."""
    gm = _two_modes()
    g = torch.Generator().manual_seed(0)
    n, t = 1_000_000, 0.4
    z1 = gm.sample(n, g).double()
    z0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    z_t = t * z1 + (1 - t) * z0
    resid = (z1 - z0) - gm.vfm_optimum(z_t, t)
    phis = [torch.ones(n), z_t[:, 0], z_t[:, 1], torch.tanh(2 * z_t[:, 0]), z_t[:, 0] * z_t[:, 1]]
    for phi in phis:
        assert (resid * phi[:, None]).mean(0).abs().max() < 0.01
    # a wrong field (e.g. the unconditional mean) fails the same check
    wrong = (z1 - z0) - (z1 - z0).mean(0)
    assert (wrong * torch.tanh(2 * z_t[:, :1])).mean(0).abs().max() > 0.1


def test_velocity_posterior_moments_match_monte_carlo_for_one_component():
    gm = GaussianMixture(torch.tensor([[1.0, -1.0]]), 0.5)
    w, mu, var = gm.velocity_posterior(torch.tensor([0.5, 0.0]), 0.6)
    assert w.item() == pytest.approx(1.0)
    # Gaussian conditioning by hand: u | z_t has variance s^2 + 1 - c^2 / v
    s2, t = 0.25, 0.6
    v, c = t**2 * s2 + (1 - t) ** 2, t * s2 - (1 - t)
    assert var.item() == pytest.approx(s2 + 1 - c**2 / v)


def test_fixed_point_satisfies_theorem_3_2_stationarity():
    gm = toy.grid_mixture(k=2, spacing=2.0, std=0.2)
    z = torch.tensor([[0.1, -0.2], [1.0, 1.0]])
    t, sigma, K = 0.3, 0.5, 3
    opt = moefm_optimum(gm, z, t, K, sigma, tol=1e-12, iters=5000)
    assert opt.converged
    pts, wts = gm.velocity_quadrature(z, t)
    d2 = (pts.unsqueeze(-2) - opt.u.unsqueeze(-3)).pow(2).sum(-1)
    gamma = torch.softmax(opt.pi.log().unsqueeze(-2) - d2 / (2 * sigma**2), -1)
    mass = (wts.unsqueeze(-1) * gamma).sum(-2)
    torch.testing.assert_close(opt.pi, mass, atol=1e-9, rtol=0)  # pi_k = E[gamma_k]
    u_hat = torch.einsum("pn,pnk,pnm->pkm", wts, gamma, pts) / mass.unsqueeze(-1)
    torch.testing.assert_close(opt.u, u_hat, atol=1e-8, rtol=0)  # u_k = E[gamma u*]/E[gamma]


def test_fixed_point_k1_is_vfm_optimum():
    gm = _two_modes()
    z = torch.randn(5, 2)
    opt = moefm_optimum(gm, z, 0.5, K=1, sigma=0.1)
    torch.testing.assert_close(opt.u[:, 0], gm.vfm_optimum(z, 0.5), atol=1e-9, rtol=0)


def test_sigma_to_zero_limit_is_hard_assignment():
    gm = _two_modes()
    z = torch.tensor([[0.0, 0.5]])
    hard = moefm_optimum(gm, z, 0.5, K=2, sigma=0)
    soft = moefm_optimum(gm, z, 0.5, K=2, sigma=1e-3, init=hard.u)
    torch.testing.assert_close(soft.u, hard.u, atol=1e-6, rtol=0)
    torch.testing.assert_close(soft.pi, hard.pi, atol=1e-6, rtol=0)
    # two well-separated modes: the experts split them with the posterior weights p(j | z_t)
    w, _, _ = gm.velocity_posterior(z, 0.5)
    assert sorted(hard.pi[0].tolist()) == pytest.approx(sorted(w[0].tolist()), abs=0.02)


def test_sigma_to_infinity_every_expert_is_the_vfm_optimum():
    gm = _two_modes()
    z = torch.randn(4, 2)
    opt = moefm_optimum(gm, z, 0.5, K=3, sigma=1e3, iters=50)
    vfm = gm.vfm_optimum(z, 0.5)
    torch.testing.assert_close(opt.u, vfm.unsqueeze(1).expand_as(opt.u), atol=1e-3, rtol=0)


def test_moefm_mixture_mean_equals_vfm_optimum():
    """Sum_k pi_k u_k = E[u*] at any EM fixed point (the M-step preserves the mean)."""
    gm = toy.grid_mixture()
    z = torch.randn(6, 2)
    opt = moefm_optimum(gm, z, 0.4, K=4, sigma=0.3)
    mean = (opt.pi.unsqueeze(-1) * opt.u).sum(-2)
    torch.testing.assert_close(mean, gm.vfm_optimum(z, 0.4), atol=1e-6, rtol=0)


def test_learned_vfm_field_is_near_the_theory_optimum():
    torch.manual_seed(0)
    gm = GaussianMixture(torch.tensor([[-1.5, 0.0], [1.5, 0.0]]), 0.3)
    data = gm.sample(4000, torch.Generator().manual_seed(0))
    res = train(data, TrainConfig(method="vfm", steps=1500, hidden=64, depth=2, batch_size=512))
    t = 0.5
    q = torch.randn(500, 2, generator=torch.Generator().manual_seed(1)) * 0.8
    with torch.no_grad():
        learned = res.model(q, torch.full((500,), t)).u[:, 0]
    exact = gm.vfm_optimum(q, t).float()
    err = (learned - exact).norm(dim=1).mean() / exact.norm(dim=1).mean()
    assert err < 0.15, err


def test_bad_inputs():
    gm = _two_modes()
    with pytest.raises(ValueError, match="t must"):
        gm.vfm_optimum(torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        moefm_optimum(gm, torch.zeros(1, 2), 0.5, 2, -1.0)
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="last dimension"):
        gm.vfm_optimum(torch.zeros(1, 3), 0.2)
