"""eq. (2), (5), (12) and the MMD of App. A.4 against direct numpy computations and limits."""

import math

import numpy as np
import pytest
import torch

from moefm import MoEHead, mmd2, moefm_nll, responsibilities, vfm_loss
from moefm.paths import linear_path


def _numpy_nll(u, log_pi, target, sigma, normalizer=False):
    # direct evaluation of eq. (5) (float64, no logsumexp): fine for moderate sigma
    d2 = ((u - target[..., None, :]) ** 2).sum(-1)
    val = -np.log((np.exp(log_pi) * np.exp(-d2 / (2 * sigma**2))).sum(-1))
    if normalizer:
        val += 0.5 * u.shape[-1] * np.log(2 * np.pi * sigma**2)
    return val


def _case(shape=(5, 3), K=4, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(*shape, K, m, generator=g, dtype=torch.float64)
    log_pi = torch.log_softmax(torch.randn(*shape, K, generator=g, dtype=torch.float64), -1)
    target = torch.randn(*shape, m, generator=g, dtype=torch.float64)
    return u, log_pi, target


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("normalizer", [False, True])
def test_moefm_nll_matches_numpy(sigma, normalizer):
    u, log_pi, target = _case()
    ref = _numpy_nll(u.numpy(), log_pi.numpy(), target.numpy(), sigma, normalizer).mean()
    got = moefm_nll(u, log_pi, target, sigma, include_normalizer=normalizer)
    assert got.item() == pytest.approx(ref, rel=1e-10)


def test_moefm_nll_mask_averages_unmasked_positions_only():
    u, log_pi, target = _case(shape=(2, 6))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    per = _numpy_nll(u.numpy(), log_pi.numpy(), target.numpy(), 1.0)
    ref = per[mask.numpy()].mean()
    assert moefm_nll(u, log_pi, target, 1.0, mask=mask).item() == pytest.approx(ref, rel=1e-10)
    # padded positions may hold garbage without changing the value
    u2 = u.clone()
    u2[~mask] = 1e6
    assert moefm_nll(u2, log_pi, target, 1.0, mask=mask).item() == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("sigma", [1e-3, 1e-2, 1.0, 1e2, 1e3])
def test_moefm_nll_finite_with_finite_grads_over_sigma_range(sigma):
    u, log_pi, target = _case()
    u = u.float().requires_grad_()
    log_pi = log_pi.float().requires_grad_()
    target = target.float() + 50.0  # far from every expert
    loss = moefm_nll(u, log_pi, target, sigma)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(u.grad).all() and torch.isfinite(log_pi.grad).all()


def test_tiny_sigma_gradient_goes_to_nearest_expert_only():
    u = torch.tensor([[[0.0, 0.0], [3.0, 0.0]]], requires_grad=True)
    log_pi = torch.log(torch.tensor([[0.5, 0.5]]))
    target = torch.tensor([[1.0, 0.0]])  # nearer to expert 0
    moefm_nll(u, log_pi, target, 1e-3).backward()
    assert u.grad[0, 1].abs().max() == 0
    assert u.grad[0, 0].abs().max() > 0


def test_responsibilities_match_numpy_and_sum_to_one():
    u, log_pi, target = _case()
    sigma = 0.8
    d2 = ((u - target[..., None, :]) ** 2).sum(-1).numpy()
    w = np.exp(log_pi.numpy()) * np.exp(-d2 / (2 * sigma**2))
    ref = w / w.sum(-1, keepdims=True)
    got = responsibilities(u, log_pi, target, sigma)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, rtol=1e-12)


def test_responsibility_limits():
    u, log_pi, target = _case()
    # sigma -> 0: one-hot on the nearest expert (Prop. A.5)
    hard = responsibilities(u, log_pi, target, 1e-4)
    nearest = ((u - target[..., None, :]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(hard.argmax(-1), nearest)
    assert torch.allclose(hard.max(-1).values, torch.ones(()).double())
    # sigma -> inf: responsibilities equal the routing (App. A.3.2)
    soft = responsibilities(u, log_pi, target, 1e4)
    assert torch.allclose(soft, log_pi.exp(), atol=1e-6)


@pytest.mark.parametrize("fn", [moefm_nll, responsibilities])
@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_sigma_must_be_positive(fn, sigma):
    u, log_pi, target = _case()
    with pytest.raises(ValueError, match="sigma"):
        fn(u, log_pi, target, sigma)


def test_shape_errors_name_the_argument():
    u, log_pi, target = _case()
    with pytest.raises(ValueError, match="log_pi"):
        moefm_nll(u, log_pi[..., :2], target, 1.0)
    with pytest.raises(ValueError, match="u_target"):
        moefm_nll(u, log_pi, target[..., :1], 1.0)
    with pytest.raises(ValueError, match="mask"):
        moefm_nll(u, log_pi, target, 1.0, mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        vfm_loss(torch.zeros(3, 2), torch.zeros(3, 1))


def test_vfm_loss_is_mean_squared_norm():
    v, u = torch.randn(7, 3), torch.randn(7, 3)
    assert vfm_loss(v, u).item() == pytest.approx(((v - u) ** 2).sum(1).mean().item(), rel=1e-6)


def test_k1_head_moefm_gradient_equals_vfm_gradient_scaled():
    """K = 1: eq. (5) = eq. (2) / (2 sigma^2), so gradients coincide up to that scale."""
    torch.manual_seed(1)
    head = MoEHead(8, 2, K=1)
    h, target = torch.randn(32, 8), torch.randn(32, 2)
    sigma = 0.3
    out = head(h)
    g_moe = torch.autograd.grad(
        moefm_nll(out.u, out.log_pi, target, sigma), list(head.parameters())
    )
    out = head(h)
    g_vfm = torch.autograd.grad(vfm_loss(out.u[:, 0], target), list(head.parameters()))
    for a, b in zip(g_moe, g_vfm):
        torch.testing.assert_close(a * 2 * sigma**2, b, rtol=1e-5, atol=1e-6)


def _mmd_reference(x, y, bandwidths):
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * s**2)) for s in bandwidths)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_mmd2_matches_appendix_a4_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(15, 3, generator=g, dtype=torch.float64) + 0.5
    bw = (0.2, 0.5, 1.0, 2.0, 5.0)
    assert mmd2(x, y).item() == pytest.approx(_mmd_reference(x.numpy(), y.numpy(), bw), rel=1e-10)


def test_mmd2_unbiased_near_zero_for_same_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    same = [
        mmd2(torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)).item()
        for _ in range(5)
    ]
    assert abs(np.mean(same)) < 5e-3
    shifted = mmd2(torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g) + 1.0).item()
    assert shifted > 0.1


def test_mmd2_gradient_is_finite_with_duplicate_points():
    x = torch.zeros(4, 2, requires_grad=True)
    mmd2(x, torch.randn(4, 2)).backward()
    assert torch.isfinite(x.grad).all()


def test_mmd2_errors():
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(torch.randn(1, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd2(torch.randn(3, 2), torch.randn(4, 2), bandwidths=(0.0,))


def test_linear_path_endpoints_and_broadcast():
    z0, z1 = torch.randn(4, 5, 3), torch.randn(4, 5, 3)
    z_t, u = linear_path(z0, z1, torch.zeros(4))
    assert torch.equal(z_t, z0) and torch.equal(u, z1 - z0)
    z_t, _ = linear_path(z0, z1, 1.0)
    assert torch.allclose(z_t, z1)
    t = torch.rand(4)
    z_t, _ = linear_path(z0, z1, t)
    assert torch.allclose(z_t[2], t[2] * z1[2] + (1 - t[2]) * z0[2])
    with pytest.raises(ValueError, match="t"):
        linear_path(z0, z1, torch.rand(3))
    with pytest.raises(ValueError, match="same shape"):
        linear_path(z0, z1[:2], 0.5)


def test_include_normalizer_is_gaussian_nll_for_k1():
    target = torch.randn(10, 3, dtype=torch.float64)
    u = torch.randn(10, 1, 3, dtype=torch.float64)
    sigma = 0.7
    got = moefm_nll(
        u, torch.zeros(10, 1, dtype=torch.float64), target, sigma, include_normalizer=True
    )
    dist = torch.distributions.Normal(u[:, 0], sigma)
    assert got.item() == pytest.approx(-dist.log_prob(target).sum(-1).mean().item(), rel=1e-10)
    assert math.isfinite(got.item())


def test_expert_floor_loss_adds_w_over_k_to_every_responsibility():
    """d/du_k [NLL + w * floor] = (r_k + w / K) (u_k - u*) / sigma^2 / N, eq. (5) + (12)."""
    from moefm.losses import expert_floor_loss

    u, log_pi, target = _case(shape=(7,), K=3, m=2)
    sigma, w = 0.7, 0.4
    u.requires_grad_(True)
    loss = moefm_nll(u, log_pi, target, sigma) + w * expert_floor_loss(u, target, sigma)
    (grad,) = torch.autograd.grad(loss, u)
    r = responsibilities(u.detach(), log_pi, target, sigma)
    want = (r + w / 3).unsqueeze(-1) * (u.detach() - target.unsqueeze(-2)) / sigma**2 / 7
    torch.testing.assert_close(grad, want)


def test_expert_floor_loss_of_one_expert_is_vfm_at_sigma_and_skips_padding():
    from moefm.losses import expert_floor_loss

    u, _, target = _case(shape=(2, 4), K=1, m=3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    want = vfm_loss(u[..., 0, :], target, mask) / (2 * 0.5**2)
    torch.testing.assert_close(expert_floor_loss(u, target, 0.5, mask), want)
    with pytest.raises(ValueError, match="do not match"):
        expert_floor_loss(u, target[..., :2], 0.5)
